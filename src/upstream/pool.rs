//! Upstream connections and their reuse.
//!
//! An HTTP/1.1 connection has no task of its own: the request that uses it writes the
//! request and reads the response head ([`super::h1`]), and after that its response body
//! reads the body straight from the connection. So the chunks of an upstream stream that
//! arrived together are decoded and relayed in one go by the relay's task, and go out to
//! the client in one write, instead of crossing from a connection task to the relay one
//! chunk per wake-up (hyper-util's pooled client hands over one chunk at a time). A
//! connection whose body was read to its end goes back to the pool; one dropped before
//! that is closed, since its request cannot be taken back, unless the rest is small and of
//! known length (an error answer left unread before a retry): a task reads it first.
//!
//! An HTTP/2 connection (offered by ALPN) carries many requests at once, so it runs in a
//! task of its own and is shared.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body as _, Frame};
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt;

use super::h1::{Framing, H1, H1Error};
use super::{BoxError, Connector};
use crate::FastHashMap;

/// Where a pooled connection goes: an upstream's scheme and authority (the proxy, if any,
/// follows from them), and the serving thread that uses it.
///
/// A connection's socket is registered with the runtime of the thread that made it; used
/// from another serving thread, every read it waits for would be reported by the first
/// thread's event loop and cross threads to wake the reader. So each serving thread
/// ([`crate::server::serve_on_threads`]) keeps its own connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    scheme: Scheme,
    authority: Authority,
    thread: usize,
}

impl Key {
    /// The key of an absolute URI, for the current serving thread; `None` for a relative one.
    pub fn of(uri: &Uri) -> Option<Key> {
        Some(Key {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
            thread: crate::server::serving_thread(),
        })
    }

    fn uri(&self) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(PathAndQuery::from_static("/"))
            .build()
    }
}

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request's URI is not absolute.
    #[error("the upstream URI is not absolute")]
    NotAbsolute,
    /// No connection could be made (TCP, proxy or TLS).
    #[error("connect error")]
    Connect(#[source] BoxError),
    /// The HTTP/2 handshake failed.
    #[error("HTTP/2 handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The HTTP/2 connection failed while the request was sent or its response awaited.
    #[error("request failed")]
    Send(#[source] hyper::Error),
    /// The HTTP/1.1 connection failed while the request was sent or its response awaited.
    #[error("request failed")]
    Exchange(#[source] H1Error),
}

/// Idle HTTP/1.1 connections per upstream, and the HTTP/2 connection of each upstream
/// that speaks it.
#[derive(Debug)]
pub struct Pool {
    connector: Connector,
    idle: Mutex<FastHashMap<Key, VecDeque<Idle>>>,
    shared: Mutex<FastHashMap<Key, Shared>>,
    idle_timeout: Duration,
    /// Whether the task that closes expired idle connections runs: nothing polls an idle
    /// connection, so without it one whose upstream went quiet would stay open.
    sweeping: AtomicBool,
}

/// An HTTP/2 connection's handle, and when a request last took it.
#[derive(Debug)]
struct Shared {
    sender: http2::SendRequest<Full<Bytes>>,
    used: Instant,
}

#[derive(Debug)]
struct Idle {
    conn: H1,
    since: Instant,
}

/// A connection taken for one request.
enum Taken {
    Own {
        conn: H1,
        reused: bool,
    },
    Shared {
        sender: http2::SendRequest<Full<Bytes>>,
        reused: bool,
    },
}

impl Pool {
    /// An empty pool of connections made by `connector`, whose idle connections are
    /// closed after `idle_timeout`.
    pub fn new(connector: Connector, idle_timeout: Duration) -> Pool {
        Pool {
            connector,
            idle: Mutex::default(),
            shared: Mutex::default(),
            idle_timeout,
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `req` on a pooled connection, or a new one. A request that a reused
    /// connection closed before writing is sent again on another.
    pub async fn send(
        self: Arc<Pool>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<super::UpstreamBody>, RequestError> {
        let key = Key::of(req.uri()).ok_or(RequestError::NotAbsolute)?;
        let uri = req.uri().clone();
        loop {
            let taken = match self.take(&key).await {
                Some(taken) => taken,
                // Boxed: making a connection is rare, and its future would otherwise make
                // every request's future as large as itself.
                None => Box::pin(self.connect(&key)).await?,
            };
            match taken {
                Taken::Shared { mut sender, reused } => {
                    sender.ready().await.map_err(RequestError::Send)?;
                    match sender.try_send_request(req).await {
                        Ok(resp) => return Ok(resp.map(super::UpstreamBody::Shared)),
                        Err(mut e) => {
                            // Not offered again: a retry makes a new connection.
                            self.shared
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&key);
                            match e.take_message() {
                                Some(unsent) if reused => req = unsent,
                                _ => return Err(RequestError::Send(e.into_error())),
                            }
                        }
                    }
                }
                Taken::Own { mut conn, reused } => {
                    for_http1(&mut req, conn.proxied);
                    let (parts, body) = req.into_parts();
                    let body = full_bytes(body);
                    match conn.send(&parts, &body).await {
                        Ok((head, framing)) => {
                            let mut own = OwnBody {
                                conn: Some(conn),
                                framing,
                                home: Some((Arc::clone(&self), key.clone())),
                                drain: true,
                            };
                            if framing == Framing::Done {
                                own.release();
                            }
                            return Ok(http::Response::from_parts(
                                head,
                                super::UpstreamBody::Own(own),
                            ));
                        }
                        Err(failed) if failed.unsent && reused => {
                            req = Request::from_parts(parts, Full::new(body));
                        }
                        Err(failed) => return Err(RequestError::Exchange(failed.error)),
                    }
                }
            }
            *req.uri_mut() = uri.clone();
        }
    }

    /// A pooled connection to `key` ready for a request, if there is one.
    async fn take(&self, key: &Key) -> Option<Taken> {
        {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(conn) = shared.get_mut(key) {
                if !conn.sender.is_closed() {
                    conn.used = Instant::now();
                    return Some(Taken::Shared {
                        sender: conn.sender.clone(),
                        reused: true,
                    });
                }
                shared.remove(key);
            }
        }
        loop {
            let mut conn = self.pop(key)?;
            if conn.ready().await {
                return Some(Taken::Own { conn, reused: true });
            }
        }
    }

    /// The most recently used idle connection to `key`, after closing the expired ones.
    fn pop(&self, key: &Key) -> Option<H1> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        self.expire(list);
        let conn = list.pop_back().map(|idle| idle.conn);
        if list.is_empty() {
            idle.remove(key);
        }
        conn
    }

    /// Keeps a connection whose exchange ended for the next request to `key`.
    fn put(self: &Arc<Pool>, key: Key, conn: H1) {
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            let list = idle.entry(key).or_default();
            self.expire(list);
            list.push_back(Idle {
                conn,
                since: Instant::now(),
            });
        }
        self.sweep();
    }

    /// Starts the task that closes expired idle connections every half idle timeout,
    /// until the pool is gone, unless it runs.
    fn sweep(self: &Arc<Pool>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let pool = Arc::downgrade(self);
        let period = self.idle_timeout / 2;
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                pool.idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, list| {
                        pool.expire(list);
                        !list.is_empty()
                    });
                // A request still under way keeps its HTTP/2 connection open after the
                // handle is dropped; the connection closes when its last stream ends.
                pool.shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|_, conn| {
                        conn.used.elapsed() < pool.idle_timeout && !conn.sender.is_closed()
                    });
            }
        });
    }

    /// The idle connections kept, for tests.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(VecDeque::len).sum()
    }

    /// Closes the connections idle for longer than the idle timeout: the oldest are first.
    fn expire(&self, list: &mut VecDeque<Idle>) {
        while list
            .front()
            .is_some_and(|idle| idle.since.elapsed() >= self.idle_timeout)
        {
            list.pop_front();
        }
    }

    async fn connect(self: &Arc<Pool>, key: &Key) -> Result<Taken, RequestError> {
        let uri = key.uri().map_err(|e| RequestError::Connect(Box::new(e)))?;
        let io = self
            .connector
            .clone()
            .oneshot(uri)
            .await
            .map_err(RequestError::Connect)?;
        let connected = io.connected();
        if connected.is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(RequestError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                }
            });
            let conn = Shared {
                sender: sender.clone(),
                used: Instant::now(),
            };
            self.shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), conn);
            self.sweep();
            return Ok(Taken::Shared {
                sender,
                reused: false,
            });
        }
        Ok(Taken::Own {
            conn: H1::new(io, connected.is_proxied()),
            reused: false,
        })
    }
}

/// An HTTP/1.1 request names its host in `Host` and its target in origin form, or in
/// absolute form to a forwarding proxy.
fn for_http1(req: &mut Request<Full<Bytes>>, proxied: bool) {
    let uri = req.uri().clone();
    if !req.headers().contains_key(HOST)
        && let Some(authority) = uri.authority()
    {
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        // The authority is `host:port` already, less any userinfo, which a Host header
        // never carries; taken as it is, not formatted again on every request.
        let text = authority.as_str();
        let host_port = text
            .rsplit_once('@')
            .map_or(text, |(_, host_port)| host_port);
        let value = match authority.port_u16() {
            Some(port) if port != default_port => HeaderValue::from_str(host_port),
            _ => HeaderValue::from_str(authority.host()),
        };
        if let Ok(value) = value {
            req.headers_mut().insert(HOST, value);
        }
    }
    if !proxied {
        let target = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(target);
    }
}

/// The body of a request made as one piece: a `Full` body is ready at once.
fn full_bytes(body: Full<Bytes>) -> Bytes {
    let mut body = std::pin::pin!(body);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match body.as_mut().poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// The body of a response on an HTTP/1.1 connection, read straight from that connection,
/// which goes back to the pool at the body's end.
#[derive(Debug)]
pub struct OwnBody {
    /// `None` once the body ended or failed, or the connection went back to the pool.
    conn: Option<H1>,
    framing: Framing,
    home: Option<(Arc<Pool>, Key)>,
    /// Whether a small unread rest is still read when the body is dropped.
    drain: bool,
}

impl OwnBody {
    fn release(&mut self) {
        if let (Some(conn), Some((pool, key))) = (self.conn.take(), self.home.take())
            && conn.reusable()
        {
            pool.put(key, conn);
        }
    }

    /// Polls the body: what the connection's buffer holds of it, or one read more.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = conn.poll_data(&mut self.framing, cx);
        match &polled {
            // At its end the connection can take the next request at once, before the
            // reader asks for the end.
            Poll::Ready(Some(Ok(_)) | None) if self.framing == Framing::Done => self.release(),
            Poll::Ready(Some(Err(_))) => {
                self.framing = Framing::Done;
                self.conn = None;
            }
            _ => {}
        }
        polled.map(|data| data.map(|data| data.map(Frame::data)))
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    pub(super) fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Done => http_body::SizeHint::with_exact(0),
            Framing::Length(rest) => http_body::SizeHint::with_exact(rest),
            Framing::Chunked(_) | Framing::UntilClose => http_body::SizeHint::default(),
        }
    }
}

/// The most of a dropped body's unread rest, of known length, that is still read so that its
/// connection can be reused: an error answer left unread before a retry, say.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long that rest may take to arrive.
const DRAIN_TIME: Duration = Duration::from_secs(1);

impl Drop for OwnBody {
    fn drop(&mut self) {
        if self.framing == Framing::Done {
            self.release();
            return;
        }
        let small = matches!(self.framing, Framing::Length(rest) if rest <= DRAIN_LIMIT);
        let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) else {
            return;
        };
        if !self.drain || !small {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = OwnBody {
            conn: Some(conn),
            framing: self.framing,
            home: Some(home),
            // Dropped unfinished, this one closes its connection.
            drain: false,
        };
        runtime.spawn(async move {
            // At the end of the body the connection goes back to the pool.
            let _ = tokio::time::timeout(DRAIN_TIME, async {
                while let Some(Ok(_)) = poll_fn(|cx| rest.poll_frame(cx)).await {}
            })
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::upstream::{ProxyRules, build_client, request, tls_config};

    /// An HTTP/1.1 upstream that answers "ok"; `seen` gets an entry per connection it
    /// accepted, holding the `x-thread` header of each request on it.
    async fn upstream(seen: Arc<Mutex<Vec<Vec<String>>>>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let index = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Vec::new());
                    seen.len() - 1
                };
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let thread = req
                            .headers()
                            .get("x-thread")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        seen.lock().unwrap()[index].push(thread);
                        async {
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn pool(idle_timeout: Duration) -> Arc<Pool> {
        let client = build_client(
            Duration::from_secs(1),
            tls_config().unwrap(),
            &ProxyRules::default(),
        );
        Arc::new(Pool::new(client.pool.connector.clone(), idle_timeout))
    }

    #[test]
    fn http1_requests_get_the_host_of_their_uri_and_an_origin_form_target() {
        let host_of = |uri: &str, proxied: bool| {
            let mut req = request(
                http::Method::GET,
                uri.parse().unwrap(),
                http::HeaderMap::new(),
                Bytes::new(),
            );
            for_http1(&mut req, proxied);
            (
                req.headers()[HOST].to_str().unwrap().to_owned(),
                req.uri().to_string(),
            )
        };
        let cases = [
            ("http://127.0.0.1:9100/v1/messages", "127.0.0.1:9100"),
            ("https://api.anthropic.com/v1/messages", "api.anthropic.com"),
            (
                "https://api.anthropic.com:443/v1/messages",
                "api.anthropic.com",
            ),
            ("http://example.com:80/v1/messages", "example.com"),
            ("https://example.com:80/v1/messages", "example.com:80"),
            ("http://user:pw@upstream:8080/v1/messages", "upstream:8080"),
            ("http://[::1]:8080/v1/messages", "[::1]:8080"),
        ];
        for (uri, host) in cases {
            assert_eq!(
                host_of(uri, false),
                (host.to_owned(), "/v1/messages".to_owned()),
                "{uri}"
            );
        }
        // Through a proxy the target stays absolute.
        let (host, target) = host_of("http://upstream:8080/v1/models?x=1", true);
        assert_eq!(host, "upstream:8080");
        assert_eq!(target, "http://upstream:8080/v1/models?x=1");
        // A Host the request already has is kept.
        let mut headers = http::HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("chosen.example"));
        let mut req = request(
            http::Method::GET,
            "http://upstream:8080/".parse().unwrap(),
            headers,
            Bytes::new(),
        );
        for_http1(&mut req, false);
        assert_eq!(req.headers()[HOST], "chosen.example");
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let addr = upstream(Arc::default()).await;
        let pool = pool(Duration::from_millis(100));
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let req = request(http::Method::GET, uri, http::HeaderMap::new(), Bytes::new());
        let resp = Arc::clone(&pool).send(req).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(pool.idle_count(), 1);
        // Nothing else uses the pool: the sweeper closes it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn each_serving_thread_keeps_its_own_connections() {
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let upstream_addr = upstream(Arc::clone(&seen)).await;
        let pool = pool(Duration::from_secs(30));
        let uri: Uri = format!("http://{upstream_addr}/").parse().unwrap();
        let relay = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let pool = Arc::clone(&pool);
                let uri = uri.clone();
                async move {
                    let mut headers = http::HeaderMap::new();
                    headers.insert(
                        "x-thread",
                        HeaderValue::from(crate::server::serving_thread()),
                    );
                    let req = request(http::Method::GET, uri, headers, Bytes::new());
                    let resp = pool.send(req).await.unwrap();
                    resp.into_body().collect().await.unwrap().to_bytes()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(crate::server::serve_on_threads(listener, relay, 2, stop_rx));

        // Two clients of one connection each: the first is served by thread 1, the second
        // by thread 2. Taking turns, each request finds the other thread's connection idle.
        let clients: Vec<reqwest::Client> = (0..2)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .http1_only()
                    .build()
                    .unwrap()
            })
            .collect();
        for _ in 0..3 {
            for client in &clients {
                let body = client.get(&url).send().await.unwrap().text().await.unwrap();
                assert_eq!(body, "ok");
            }
        }
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, [vec!["1"; 3], vec!["2"; 3]]);
        stop.send(true).unwrap();
        drop(clients);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
