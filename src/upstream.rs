//! Calls to a provider: the pooled HTTP client, its requests and responses, and the headers
//! that go upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

use crate::actor::{ACTOR_ID_HEADER, ACTOR_METADATA_PREFIX, Actor};
use crate::provider::{ProviderConfig, ProviderKind};
use crate::secret::mask;

pub mod h1;
mod pool;
pub mod proxy;

use pool::Pool;
pub use pool::{OwnBody, RequestError};
pub use proxy::{Proxy, ProxyRules};
use proxy::{ProxyConnector, Tcp};

/// Headers that describe one hop, not the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// How the upstream request was authenticated, for the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `centralized` (the bridge's key) or `byok` (the client's own), or `none`.
    pub kind: &'static str,
    /// A masked hint of the key used.
    pub hint: Option<String>,
}

/// The client of upstream calls: pooled connections over TCP, with TLS for `https://`
/// upstreams (HTTP/2 when the server offers it by ALPN, else HTTP/1.1), through the
/// outbound proxy its [`ProxyRules`] name for an upstream, if any. See `pool.rs` for how
/// connections are driven and reused.
#[derive(Clone, Debug)]
pub struct HttpClient {
    pool: Arc<Pool>,
    /// The proxies of upstream URIs; `None` when there are none.
    proxies: Option<Arc<Matcher>>,
    /// Whether `http://` upstreams go through a proxy with credentials: their requests then
    /// carry `Proxy-Authorization` (an `https://` upstream's go in a tunnel whose `CONNECT`
    /// carries it instead).
    http_proxy_auth: bool,
}

impl HttpClient {
    /// Sends a request made by [`request`]; the future ends with the response head.
    pub fn request(&self, mut req: http::Request<Full<Bytes>>) -> ResponseFuture {
        if self.http_proxy_auth
            && req.uri().scheme() == Some(&http::uri::Scheme::HTTP)
            && let Some(intercept) = self.proxy(req.uri())
            && let Some(auth) = intercept.basic_auth()
        {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        Box::pin(Arc::clone(&self.pool).send(req))
    }

    /// The proxy (`http://host:port/`, never with credentials) that calls to `uri` go
    /// through, if any.
    pub fn proxy_for(&self, uri: &Uri) -> Option<Uri> {
        self.proxy(uri).map(|intercept| intercept.uri().clone())
    }

    fn proxy(&self, uri: &Uri) -> Option<Intercept> {
        self.proxies.as_ref()?.intercept(uri)
    }
}

/// An upstream call under way. Boxed: the connection's state machine inside is large, and
/// the futures of the request path that await it would otherwise be moved with it.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<UpstreamResponse, RequestError>> + Send>>;

/// An upstream response: the upstream's own, or one the bridge made in its place.
pub type UpstreamResponse = http::Response<UpstreamBody>;

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS could not be set up, e.g. the system has no root certificates.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The TLS settings of every upstream connection: the system's root certificates (verified
/// by `rustls-platform-verifier`, as reqwest's `rustls` feature does), the aws-lc-rs crypto
/// provider given explicitly so that no process-wide default is needed, and ALPN offering
/// HTTP/2 and HTTP/1.1. Made once: loading the system's roots reads files.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Builds a pooled client for upstream calls, with this connect timeout. There is no
/// overall timeout: time to first byte and idle gaps are enforced by the relay, so a long
/// stream is never cut while it is still moving. Redirects are not followed (the client
/// has no redirect handling at all).
///
/// Upstreams go through the proxies of `proxies` (read once, here: per connection the
/// connector only asks the matcher).
pub fn build_client(
    connect_timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    proxies: &ProxyRules,
) -> HttpClient {
    let mut http = HttpConnector::new();
    // The scheme is checked by the TLS connector, which hands `http://` to this one.
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // reqwest's defaults, kept: a dead peer is noticed on an idle pooled connection, and
    // data left unacknowledged for 30 s fails the connection.
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    http.set_keepalive_retries(Some(3));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let matcher = proxies.matcher().map(Arc::new);
    let https = Connector {
        inner: HttpsConnector::from((ProxyConnector::new(http, matcher.clone()), tls)),
        timeout: connect_timeout,
    };
    HttpClient {
        pool: Arc::new(Pool::new(https, Duration::from_secs(90))),
        http_proxy_auth: matcher.is_some() && proxies.http_has_credentials(),
        proxies: matcher,
    }
}

/// The connector of [`HttpClient`]: TCP (to the upstream or through its proxy), then TLS
/// for `https://`, all within the connect timeout (the TCP connector's own timeout covers only the TCP part, and a TLS handshake
/// that hangs would otherwise wait for the much longer time-to-first-byte timeout, which
/// is not retried).
#[derive(Clone, Debug)]
pub struct Connector {
    inner: HttpsConnector<ProxyConnector>,
    timeout: Duration,
}

/// A connection that was not made within the connect timeout.
#[derive(Debug, thiserror::Error)]
#[error("connection not established within {0:?}")]
pub struct ConnectTimeout(Duration);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// An upstream connection's transport.
pub type Connection = MaybeHttpsStream<Tcp>;

impl tower::Service<Uri> for Connector {
    type Response = Connection;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        Connecting {
            inner: self.inner.call(uri),
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            timeout: self.timeout,
        }
    }
}

/// A connection being made, with its deadline. Unpin, as hyper-util requires.
pub struct Connecting {
    inner: <HttpsConnector<ProxyConnector> as tower::Service<Uri>>::Future,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl Future for Connecting {
    type Output = Result<Connection, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(done) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Box::new(ConnectTimeout(self.timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An upstream request: `uri` must be absolute (scheme and host). The `Host` header and
/// the body's length are set by the client. Like reqwest, which the bridge used before,
/// it asks for `*/*` when the client named nothing it accepts.
pub fn request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    let mut req = http::Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    if let Entry::Vacant(accept) = req.headers_mut().entry(http::header::ACCEPT) {
        accept.insert(HeaderValue::from_static("*/*"));
    }
    req
}

/// Parses an upstream URL made by [`ProviderConfig::upstream_url`]. A URL `http::Uri`
/// refuses but the `url` crate accepts (it percent-encodes what it must) is taken in the
/// `url` crate's form. The error never holds the URL.
///
/// A URL with credentials (`https://user:pass@host`) is refused: the client would not
/// turn them into an `Authorization` header, and over HTTP/2 they would go out as part of
/// the `:authority`. Provider keys are configured by `api_key_env` instead.
pub fn parse_uri(url: &str) -> Result<Uri, String> {
    let uri = match Uri::try_from(url) {
        Ok(uri) => uri,
        Err(_) => match url::Url::parse(url) {
            Ok(parsed) => Uri::try_from(parsed.as_str()).map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        },
    };
    match (uri.scheme(), uri.authority()) {
        (_, Some(authority)) if authority.as_str().contains('@') => {
            Err(CREDENTIALS_IN_URL.to_owned())
        }
        (Some(_), Some(_)) => Ok(uri),
        _ => Err("not an absolute URL".to_owned()),
    }
}

/// Why an upstream URL with credentials is refused.
pub const CREDENTIALS_IN_URL: &str =
    "the base URL holds credentials: give the provider's key by api_key_env instead";

/// A client error with its sources, e.g. `client error (Connect): tcp connect error:
/// Connection refused (os error 111)`: hyper-util's own message alone says little. None of
/// them holds the URL or headers.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        // Some errors repeat their source's message in their own.
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Why reading an upstream body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// On an HTTP/1.1 connection.
    #[error(transparent)]
    Http1(#[from] h1::H1Error),
    /// On an HTTP/2 connection.
    #[error(transparent)]
    Http2(#[from] hyper::Error),
}

/// The body of an [`UpstreamResponse`].
#[derive(Debug)]
pub enum UpstreamBody {
    /// The upstream's body on an HTTP/1.1 connection, which reading it drives.
    Own(OwnBody),
    /// The upstream's body on a shared HTTP/2 connection, which runs in its own task.
    Shared(Incoming),
    /// A body the bridge made, such as an open circuit's 503.
    Made(Full<Bytes>),
}

impl UpstreamBody {
    /// The next chunk of data, `None` at the end; trailers are skipped.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            match self.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Own(body) => body.poll_frame(cx).map_err(BodyError::Http1),
            UpstreamBody::Shared(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Http2),
            UpstreamBody::Made(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Own(body) => body.is_end_stream(),
            UpstreamBody::Shared(body) => body.is_end_stream(),
            UpstreamBody::Made(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Own(body) => body.size_hint(),
            UpstreamBody::Shared(body) => body.size_hint(),
            UpstreamBody::Made(body) => body.size_hint(),
        }
    }
}

/// The headers to send upstream: the client's, minus hop-by-hop, the bridge's own
/// `x-aibridge-*`, and (when the bridge must read the body) `accept-encoding`; with the
/// provider's key replacing the client's, or the client's own key when the provider has none.
pub fn upstream_headers(
    client: &HeaderMap,
    provider: &ProviderConfig,
    actor: &Actor,
    bridged: bool,
) -> (HeaderMap, Credential) {
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n.starts_with("x-aibridge-")
            || n == "x-api-key"
            || n == "authorization"
            || (bridged && n == "accept-encoding")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let credential = match &provider.api_key {
        Some(key) => {
            let header = match provider.kind {
                ProviderKind::Anthropic => ("x-api-key", key.expose().to_owned()),
                ProviderKind::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
            };
            if let Ok(mut v) = HeaderValue::from_str(&header.1) {
                v.set_sensitive(true);
                out.insert(HeaderName::from_static(header.0), v);
            }
            Credential {
                kind: "centralized",
                hint: Some(key.hint()),
            }
        }
        None if !actor.client_key_is_virtual => {
            let mut hint = None;
            for name in ["x-api-key", "authorization"] {
                for value in client.get_all(name) {
                    let mut v = value.clone();
                    v.set_sensitive(true);
                    out.append(HeaderName::from_static(name), v);
                    if hint.is_none() {
                        let text = value.to_str().unwrap_or("");
                        hint = Some(mask(text.strip_prefix("Bearer ").unwrap_or(text)));
                    }
                }
            }
            Credential {
                kind: if hint.is_some() { "byok" } else { "none" },
                hint,
            }
        }
        None => Credential {
            kind: "none",
            hint: None,
        },
    };
    if provider.send_actor_headers {
        if let Ok(v) = HeaderValue::from_str(&actor.id) {
            out.insert(HeaderName::from_static(ACTOR_ID_HEADER), v);
        }
        for (k, v) in &actor.metadata {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(format!("{ACTOR_METADATA_PREFIX}{k}").as_bytes()),
                HeaderValue::from_str(v),
            ) {
                out.insert(name, value);
            }
        }
    }
    (out, credential)
}

/// Response headers to relay: the upstream's, minus hop-by-hop ones (and the length when
/// the body is re-framed).
pub fn client_headers(upstream: &HeaderMap, keep_length: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + 1);
    for (name, value) in upstream {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) && !(keep_length && n == "content-length") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_for_https_is_built_without_a_default_crypto_provider() {
        // No process-wide provider is installed here: the config names its own.
        let tls = tls_config().unwrap();
        assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let client = build_client(Duration::from_secs(1), tls, &ProxyRules::default());
        let uri = parse_uri("https://api.anthropic.com/v1/messages").unwrap();
        assert_eq!(uri.scheme_str(), Some("https"));
        // Port 1 of the loopback: refused at once, so no network is needed. The request
        // goes through the TLS connector, which hands it to TCP first.
        let uri = parse_uri("https://127.0.0.1:1/v1/messages").unwrap();
        let req = request(
            Method::POST,
            uri,
            HeaderMap::new(),
            Bytes::from_static(b"{}"),
        );
        let err = client.request(req).await.unwrap_err();
        let text = error_chain(&err);
        assert!(text.starts_with("connect error: "), "{text}");
        assert!(text.contains("tcp connect error"), "{text}");
    }

    #[tokio::test]
    async fn a_tls_handshake_that_hangs_ends_at_the_connect_timeout() {
        // Accepts TCP, then never answers the TLS hello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = build_client(
            Duration::from_millis(200),
            tls_config().unwrap(),
            &ProxyRules::default(),
        );
        let uri = parse_uri(&format!("https://{addr}/v1/messages")).unwrap();
        let req = request(Method::POST, uri, HeaderMap::new(), Bytes::new());
        let sent = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(5), client.request(req)).await;
        let err = outcome.expect("the connect timeout ended it").unwrap_err();
        assert!(sent.elapsed() >= Duration::from_millis(200));
        let text = error_chain(&err);
        assert!(
            text.contains("connection not established within 200ms"),
            "{text}"
        );
    }

    #[test]
    fn upstream_uris_are_absolute_and_never_hold_credentials() {
        let uri = parse_uri("http://127.0.0.1:9/v1/chat completions?a=b c").unwrap();
        assert_eq!(uri.path(), "/v1/chat%20completions");
        for bad in ["https://k:s3cret@api.openai.com/v1", "/v1/messages", "nope"] {
            let err = parse_uri(bad).unwrap_err();
            assert!(!err.contains("s3cret"), "{err}");
        }
        assert_eq!(
            parse_uri("https://k:s3cret@api.openai.com/v1").unwrap_err(),
            CREDENTIALS_IN_URL
        );
    }

    #[test]
    fn requests_accept_anything_unless_the_client_said() {
        let uri = Uri::from_static("http://h/x");
        let req = request(Method::GET, uri.clone(), HeaderMap::new(), Bytes::new());
        assert_eq!(req.headers()[http::header::ACCEPT], "*/*");
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        let req = request(Method::GET, uri, headers, Bytes::new());
        assert_eq!(req.headers()[http::header::ACCEPT], "text/event-stream");
    }

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(error_chain(&err), "outer: refused");
    }
}
