//! The upstream client's connections on real loopback sockets: reuse after a body was read,
//! no reuse of one dropped early or closed by the server, chunks that arrived together
//! read without waiting on another task, the HTTP/1.1 framings a raw server sends (interim
//! answers, chunk extensions and trailers, a body delimited by the close, a cut chunk, a
//! malformed head), and HTTP/2 (by ALPN, over TLS) shared by concurrent requests.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aibridge::upstream::{
    HttpClient, ProxyRules, UpstreamBody, UpstreamResponse, build_client, request, tls_config,
};
use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the test server answers a path.
fn answer(path: &str) -> http::Response<StreamBody<BoxStream>> {
    let chunks: Vec<Bytes> = match path {
        // Twenty chunks written together, as a model's burst of events.
        "/burst" => (0..20)
            .map(|i| Bytes::from(format!("event {i}\n")))
            .collect(),
        _ => vec![Bytes::from_static(b"hello")],
    };
    let slow = path == "/slow";
    let stream = async_stream(chunks, slow);
    let mut resp = http::Response::new(StreamBody::new(stream));
    if path == "/busy" {
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
    }
    if path == "/close" {
        resp.headers_mut()
            .insert(http::header::CONNECTION, "close".parse().unwrap());
    }
    resp
}

type BoxStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Send>,
>;

/// The chunks, then (for `/slow`) a second one that never comes.
fn async_stream(chunks: Vec<Bytes>, slow: bool) -> BoxStream {
    use futures_util::StreamExt;
    let head =
        futures_util::stream::iter(chunks.into_iter().map(|c| Ok(http_body::Frame::data(c))));
    if slow {
        Box::pin(head.chain(futures_util::stream::pending()))
    } else {
        Box::pin(head)
    }
}

/// An HTTP/1.1 server on loopback that counts the connections it accepted; its URI and a
/// client.
async fn server() -> (Uri, HttpClient, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    Ok::<_, Infallible>(answer(req.uri().path()))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), svc)
                    .await;
            });
        }
    });
    (
        format!("http://{addr}").parse().unwrap(),
        client(),
        accepted,
    )
}

fn client() -> HttpClient {
    build_client(
        Duration::from_secs(2),
        tls_config().unwrap(),
        &ProxyRules::default(),
    )
}

async fn get(client: &HttpClient, base: &Uri, path: &str) -> UpstreamResponse {
    let uri: Uri = format!("{base}{}", path.trim_start_matches('/'))
        .parse()
        .unwrap();
    let req = request(Method::GET, uri, HeaderMap::new(), Bytes::new());
    client.request(req).await.unwrap()
}

async fn text(resp: UpstreamResponse) -> String {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_connection_whose_body_was_read_is_reused() {
    let (base, client, accepted) = server().await;
    for _ in 0..3 {
        let resp = get(&client, &base, "/").await;
        assert_eq!(resp.status(), 200);
        assert!(matches!(resp.body(), UpstreamBody::Own(_)));
        assert_eq!(text(resp).await, "hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (base, client, accepted) = server().await;
    let mut resp = get(&client, &base, "/slow").await;
    let first = resp.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "hello");
    drop(resp);
    // The dropped request's answer may still come: its connection cannot carry another.
    assert_eq!(text(get(&client, &base, "/").await).await, "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_small_answer_left_unread_is_read_so_its_connection_is_reused() {
    // As before a retry: the 503's body is not read.
    let (base, client, accepted) = server().await;
    let busy = get(&client, &base, "/busy").await;
    assert_eq!(busy.status(), 503);
    drop(busy);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(text(get(&client, &base, "/").await).await, "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_server_said_it_closes_is_not_reused() {
    let (base, client, accepted) = server().await;
    assert_eq!(text(get(&client, &base, "/close").await).await, "hello");
    assert_eq!(text(get(&client, &base, "/").await).await, "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_connection_the_server_dropped_is_replaced() {
    // Answers one request per connection, then closes without saying so.
    let (addr, accepted) = raw_listener(|mut socket| async move {
        assert!(
            read_request_head(&mut socket).await,
            "the request ended early"
        );
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
    })
    .await;
    let base: Uri = format!("http://{addr}").parse().unwrap();
    let client = client();
    assert_eq!(text(get(&client, &base, "/").await).await, "ok");
    // Let the server's FIN arrive while the connection sits in the pool.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(text(get(&client, &base, "/").await).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn chunks_that_arrived_together_are_read_without_waiting() {
    let (base, client, _) = server().await;
    let mut resp = get(&client, &base, "/burst").await;
    // All twenty chunks are in the socket by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    let mut data = Vec::new();
    loop {
        match std::pin::Pin::new(resp.body_mut()).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => {
                frames += 1;
                data.extend_from_slice(&frame.into_data().unwrap());
            }
            Poll::Ready(None) => break,
            Poll::Ready(Some(Err(e))) => panic!("{e}"),
            // A connection in a task of its own would have to run first.
            Poll::Pending => panic!("pending after {frames} frames"),
        }
    }
    let expected: String = (0..20).map(|i| format!("event {i}\n")).collect();
    assert_eq!(String::from_utf8(data).unwrap(), expected);
    // What the head's read brought in, then the rest in one read: the chunks come out
    // together, not one frame each.
    assert!(frames <= 2, "{frames} frames");
}

/// A TLS server on loopback offering only `alpn`, with a certificate for `localhost`;
/// returns its URI and a client that trusts it.
async fn tls_server(alpn: &[&[u8]]) -> (Uri, HttpClient, Arc<AtomicUsize>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let text = format!("{:?} {}", req.version(), req.uri().path());
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let client = build_client(
        Duration::from_secs(2),
        Arc::new(tls),
        &ProxyRules::default(),
    );
    let uri = format!("https://localhost:{port}").parse().unwrap();
    (uri, client, accepted)
}

#[tokio::test]
async fn http2_offered_by_alpn_carries_concurrent_requests_on_one_connection() {
    let (base, client, accepted) = tls_server(&[b"h2"]).await;
    let first = get(&client, &base, "/a").await;
    assert_eq!(first.version(), Version::HTTP_2);
    assert!(matches!(first.body(), UpstreamBody::Shared(_)));
    let (b, c) = tokio::join!(get(&client, &base, "/b"), get(&client, &base, "/c"));
    // The server saw HTTP/2 requests with their paths.
    assert_eq!(text(first).await, "HTTP/2.0 /a");
    assert_eq!(text(b).await, "HTTP/2.0 /b");
    assert_eq!(text(c).await, "HTTP/2.0 /c");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn tls_without_http2_uses_http1_and_reuses_the_connection() {
    let (base, client, accepted) = tls_server(&[b"http/1.1"]).await;
    for path in ["/a", "/b"] {
        let resp = get(&client, &base, path).await;
        assert_eq!(resp.version(), Version::HTTP_11);
        assert_eq!(text(resp).await, format!("HTTP/1.1 {path}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// A loopback server that runs `serve` on each connection it accepts; its address and the
/// count of connections.
async fn raw_listener<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(socket));
        }
    });
    (addr, accepted)
}

/// Reads up to the end of a request head; `false` if the connection ended first.
async fn read_request_head(socket: &mut tokio::net::TcpStream) -> bool {
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A raw HTTP/1.1 server: answers the requests of each connection, in turn, with the
/// given bytes (one answer per request, the connection closed after the last); its URI, a
/// client, and the count of connections.
async fn raw_server(answers: Vec<&'static [u8]>) -> (Uri, HttpClient, Arc<AtomicUsize>) {
    let (addr, accepted) = raw_listener(move |mut socket| {
        let answers = answers.clone();
        async move {
            for answer in answers {
                if !read_request_head(&mut socket).await {
                    return;
                }
                // Written in two pieces, so the head and the body arrive apart.
                let (head, body) = answer.split_at(answer.len() / 2);
                if socket.write_all(head).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if socket.write_all(body).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (
        format!("http://{addr}").parse().unwrap(),
        client(),
        accepted,
    )
}

#[tokio::test]
async fn interim_answers_chunk_extensions_and_trailers_are_read_and_the_connection_reused() {
    let (base, client, accepted) = raw_server(vec![
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-upstream: yes\r\n\r\n\
          5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
    ])
    .await;
    let resp = get(&client, &base, "/").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "yes");
    assert_eq!(text(resp).await, "hello, world");
    assert_eq!(text(get(&client, &base, "/").await).await, "second");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_delimited_by_the_close_is_read_to_the_end_and_its_connection_not_reused() {
    let (base, client, accepted) = raw_server(vec![
        b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: a\n\ndata: b\n\n",
    ])
    .await;
    for _ in 0..2 {
        let body = text(get(&client, &base, "/").await).await;
        assert_eq!(body, "data: a\n\ndata: b\n\n");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_cut_inside_a_chunk_is_an_error_not_a_short_body() {
    let (base, client, _) = raw_server(vec![
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nonly part",
    ])
    .await;
    let mut body = get(&client, &base, "/").await.into_body();
    let mut got = Vec::new();
    let err = loop {
        match body.chunk().await {
            Ok(Some(data)) => got.extend_from_slice(&data),
            Ok(None) => panic!("the cut body ended cleanly"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"only part");
    assert!(err.to_string().contains("closed the connection"), "{err}");
}

#[tokio::test]
async fn a_malformed_answer_is_an_error_naming_what_is_wrong() {
    let (base, client, _) = raw_server(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
    ])
    .await;
    let uri: Uri = format!("{base}x").parse().unwrap();
    let req = request(Method::GET, uri, HeaderMap::new(), Bytes::new());
    let err = client.request(req).await.unwrap_err();
    let chain = aibridge::upstream::error_chain(&err);
    assert!(chain.contains("conflicting Content-Length"), "{chain}");
}

#[tokio::test]
async fn an_answer_sent_before_the_request_body_was_read_is_relayed() {
    // Only the head is read; the answer comes at once, and the body is left unread for
    // longer than the client may wait: it must not wait for it.
    let (addr, accepted) = raw_listener(|mut socket| async move {
        if !read_request_head(&mut socket).await {
            return;
        }
        let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large";
        if socket.write_all(answer).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let client = client();
    let base: Uri = format!("http://{addr}/").parse().unwrap();
    // Far more than loopback socket buffers hold, so the write has to wait on the server.
    let body = Bytes::from(vec![b'x'; 64 << 20]);
    let req = request(Method::POST, base.clone(), HeaderMap::new(), body);
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("the early answer is relayed, not a write waiting on the server")
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(text(resp).await, "too large");
    // The connection is out of step (its request was cut short): the next request gets a
    // new one.
    assert_eq!(text(get(&client, &base, "/").await).await, "too large");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
