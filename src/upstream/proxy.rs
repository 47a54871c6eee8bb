//! Outbound proxies of upstream calls: which proxy an upstream URL goes through
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl and reqwest read them, or a
//! provider's own `proxy`), and the TCP connector that reaches the upstream through it: an
//! HTTP `CONNECT` tunnel for `https://` upstreams (TLS is then made over the tunnel), the
//! proxy itself for `http://` upstreams (requests then go in absolute form).
//!
//! The proxy URL's credentials become a `Proxy-Authorization: Basic` header and nothing else:
//! no error, log line or `Debug` output holds them.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Env;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a provider's upstream calls go out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Proxy {
    /// As the proxy environment variables of the process say, read once when the bridge is
    /// built: what reqwest and curl do, so the default.
    #[default]
    Environment,
    /// Straight to the upstream, whatever the environment says.
    Direct,
    /// As these rules say.
    Rules(ProxyRules),
}

impl Proxy {
    /// The rules this setting stands for, reading `env` for [`Proxy::Environment`].
    pub fn rules(&self, env: &dyn Env) -> ProxyRules {
        match self {
            Proxy::Environment => ProxyRules::from_env(env),
            Proxy::Direct => ProxyRules::default(),
            Proxy::Rules(rules) => rules.clone(),
        }
    }
}

/// Proxy URLs per upstream scheme and the hosts that bypass them, with the meaning of the
/// environment variables of the same names. Empty rules mean no proxy. `Debug` never prints
/// a proxy URL's credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProxyRules {
    /// The proxy of `http://` upstreams (`HTTP_PROXY`).
    pub http: Option<String>,
    /// The proxy of `https://` upstreams (`HTTPS_PROXY`).
    pub https: Option<String>,
    /// The proxy of upstreams whose scheme has none of its own (`ALL_PROXY`).
    pub all: Option<String>,
    /// Comma-separated hosts, domain suffixes, IP addresses and CIDR ranges reached
    /// directly, or `*` for all (`NO_PROXY`).
    pub no: Option<String>,
}

impl ProxyRules {
    /// Every upstream through this proxy.
    pub fn all(url: impl Into<String>) -> ProxyRules {
        ProxyRules {
            all: Some(url.into()),
            ..ProxyRules::default()
        }
    }

    /// The rules of the environment: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
    /// `NO_PROXY`, each upper case first, then lower case. As in curl and reqwest,
    /// `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set: under CGI it may come from a
    /// request's `Proxy` header ("httpoxy").
    pub fn from_env(env: &dyn Env) -> ProxyRules {
        let first = |names: [&str; 2]| names.iter().find_map(|name| env.var(name));
        let cgi = env.var("REQUEST_METHOD").is_some();
        ProxyRules {
            http: (!cgi)
                .then(|| first(["HTTP_PROXY", "http_proxy"]))
                .flatten(),
            https: first(["HTTPS_PROXY", "https_proxy"]),
            all: first(["ALL_PROXY", "all_proxy"]),
            no: first(["NO_PROXY", "no_proxy"]),
        }
    }

    /// Whether no upstream goes through a proxy.
    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none() && self.all.is_none()
    }

    /// The matcher of these rules; `None` when no proxy is set, so that direct connections
    /// cost nothing.
    pub(crate) fn matcher(&self) -> Option<Matcher> {
        if self.is_empty() {
            return None;
        }
        Some(self.builder().no(self.no.as_deref().unwrap_or("")).build())
    }

    /// The proxy's `host:port` (never its credentials) that calls to `url` go through, if
    /// any. Builds a matcher: for reports, not for requests.
    pub fn proxy_for(&self, url: &str) -> Option<String> {
        let uri = Uri::try_from(url).ok()?;
        let intercept = self.matcher()?.intercept(&uri)?;
        intercept.uri().authority().map(|a| a.as_str().to_owned())
    }

    /// Whether `http://` upstreams go through a proxy with credentials: their requests then
    /// carry `Proxy-Authorization`. Decided without `NO_PROXY`, which is applied per request.
    pub(crate) fn http_has_credentials(&self) -> bool {
        self.builder()
            .build()
            .intercept(&Uri::from_static("http://upstream.invalid/"))
            .is_some_and(|intercept| intercept.basic_auth().is_some())
    }

    fn builder(&self) -> hyper_util::client::proxy::matcher::Builder {
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        Matcher::builder()
            .http(value(&self.http))
            .https(value(&self.https))
            .all(value(&self.all))
    }
}

impl fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_deref().map(without_credentials);
        f.debug_struct("ProxyRules")
            .field("http", &shown(&self.http))
            .field("https", &shown(&self.https))
            .field("all", &shown(&self.all))
            .field("no", &self.no)
            .finish()
    }
}

/// A proxy URL with any `user:password@` replaced by `***@`, for display.
pub fn without_credentials(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_owned(),
    }
}

/// Why an upstream could not be reached through its proxy. Never holds the proxy's
/// credentials; names the proxy by host and port.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// TCP to the proxy failed; the source says why.
    #[error("cannot connect to proxy {proxy}")]
    Connect {
        /// The proxy's `host:port`.
        proxy: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The proxy answered the `CONNECT` with something other than 2xx.
    #[error("proxy CONNECT refused: {status} (proxy {proxy})")]
    Refused {
        /// The status code and reason phrase, e.g. `407 Proxy Authentication Required`.
        status: String,
        /// The proxy's `host:port`.
        proxy: String,
    },
    /// The `CONNECT` exchange itself failed.
    #[error("proxy CONNECT failed: {reason} (proxy {proxy})")]
    Tunnel {
        /// What went wrong.
        reason: String,
        /// The proxy's `host:port`.
        proxy: String,
    },
    /// The proxy URL's scheme is not `http`.
    #[error("proxy scheme `{0}` is not supported: only http:// proxies are")]
    Scheme(String),
}

/// The TCP part of the upstream connector: straight to the upstream, or to the proxy that
/// [`ProxyRules`] name for it (tunnelled by `CONNECT` for `https://`). TLS comes on top.
#[derive(Clone, Debug)]
pub struct ProxyConnector {
    tcp: HttpConnector,
    proxies: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    /// A connector over `tcp`, through the proxies `proxies` name.
    pub(crate) fn new(tcp: HttpConnector, proxies: Option<Arc<Matcher>>) -> ProxyConnector {
        ProxyConnector { tcp, proxies }
    }

    /// The proxy an upstream URI goes through, if any.
    pub(crate) fn intercept(&self, uri: &Uri) -> Option<Intercept> {
        self.proxies.as_ref()?.intercept(uri)
    }
}

/// A TCP connection to the upstream, or to the proxy of an `http://` upstream.
#[derive(Debug)]
pub struct Tcp {
    io: TokioIo<TcpStream>,
    /// Requests on it go to a forwarding proxy, so in absolute form.
    forwarding: bool,
}

impl Connection for Tcp {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarding)
    }
}

impl Read for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

type Direct = <HttpConnector as tower::Service<Uri>>::Future;

/// A TCP connection being made. The direct one is not boxed again: it is the common case.
pub enum TcpConnecting {
    /// Straight to the upstream.
    Direct(Direct),
    /// Through a proxy.
    Proxied(Pin<Box<dyn Future<Output = Result<Tcp, BoxError>> + Send>>),
}

impl Future for TcpConnecting {
    type Output = Result<Tcp, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            TcpConnecting::Direct(f) => Pin::new(f).poll(cx).map(|done| match done {
                Ok(io) => Ok(Tcp {
                    io,
                    forwarding: false,
                }),
                Err(e) => Err(e.into()),
            }),
            TcpConnecting::Proxied(f) => f.as_mut().poll(cx),
        }
    }
}

impl tower::Service<Uri> for ProxyConnector {
    type Response = Tcp;
    type Error = BoxError;
    type Future = TcpConnecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> TcpConnecting {
        let Some(intercept) = self.intercept(&dst) else {
            return TcpConnecting::Direct(self.tcp.call(dst));
        };
        let proxy_uri = intercept.uri().clone();
        let proxy = proxy_uri
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned());
        if proxy_uri.scheme_str() != Some("http") {
            let scheme = proxy_uri.scheme_str().unwrap_or("").to_owned();
            return TcpConnecting::Proxied(Box::pin(async move {
                Err(Box::new(ProxyError::Scheme(scheme)) as BoxError)
            }));
        }
        let connecting = self.tcp.call(proxy_uri);
        let auth = intercept.basic_auth().cloned();
        let tunnel = dst.scheme_str() == Some("https");
        TcpConnecting::Proxied(Box::pin(async move {
            let io = connecting.await.map_err(|e| ProxyError::Connect {
                proxy: proxy.clone(),
                source: e.into(),
            })?;
            if !tunnel {
                return Ok(Tcp {
                    io,
                    forwarding: true,
                });
            }
            let mut tcp = io.into_inner();
            let host = dst.host().unwrap_or("");
            let port = dst.port_u16().unwrap_or(443);
            connect_tunnel(&mut tcp, host, port, auth.as_ref(), &proxy).await?;
            Ok(Tcp {
                io: TokioIo::new(tcp),
                forwarding: false,
            })
        }))
    }
}

/// The longest `CONNECT` response head read.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

/// Asks the proxy on `io` for a tunnel to `host:port`. On success the stream is the tunnel.
async fn connect_tunnel(
    io: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&HeaderValue>,
    proxy: &str,
) -> Result<(), ProxyError> {
    let failed = |reason: String| ProxyError::Tunnel {
        reason,
        proxy: proxy.to_owned(),
    };
    let mut head =
        format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
    if let Some(auth) = auth {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    io.write_all(&head)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut buf = Vec::with_capacity(512);
    loop {
        // Byte by byte would be slow; the proxy sends nothing after its head until the
        // client speaks, so reading in chunks cannot swallow tunnel data of a well-behaved
        // proxy (and data before the client's TLS hello is refused below).
        let mut chunk = [0u8; 512];
        let n = io
            .read(&mut chunk)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if n == 0 {
            return Err(failed("the proxy closed the connection".to_owned()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let code = response.code.unwrap_or(0);
                if !(200..300).contains(&code) {
                    let reason: String = response
                        .reason
                        .unwrap_or("")
                        .chars()
                        .filter(|c| c.is_ascii_graphic() || *c == ' ')
                        .take(100)
                        .collect();
                    return Err(ProxyError::Refused {
                        status: format!("{code} {reason}").trim_end().to_owned(),
                        proxy: proxy.to_owned(),
                    });
                }
                if len != buf.len() {
                    return Err(failed(
                        "the proxy sent data before the tunnel was used".to_owned(),
                    ));
                }
                return Ok(());
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_CONNECT_RESPONSE => {}
            Ok(httparse::Status::Partial) => {
                return Err(failed("the proxy's response head is too long".to_owned()));
            }
            Err(e) => return Err(failed(format!("malformed response: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    #[test]
    fn rules_come_from_upper_then_lower_case_variables() {
        let rules = ProxyRules::from_env(&env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:1"),
            ("http_proxy", "http://plain:2"),
            ("no_proxy", "localhost,127.0.0.1"),
        ]));
        assert_eq!(rules.https.as_deref(), Some("http://upper:1"));
        assert_eq!(rules.http.as_deref(), Some("http://plain:2"));
        assert_eq!(rules.all, None);
        assert_eq!(rules.no.as_deref(), Some("localhost,127.0.0.1"));
        assert!(ProxyRules::from_env(&env(&[])).is_empty());
        let cgi = ProxyRules::from_env(&env(&[
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://evil:1"),
        ]));
        assert!(cgi.is_empty(), "{cgi:?}");
    }

    #[test]
    fn no_proxy_and_schemes_decide_per_uri() {
        let rules = ProxyRules {
            https: Some("http://u:pw@secure:3128".into()),
            all: Some("http://other:8080".into()),
            no: Some("localhost, .internal.corp,10.0.0.0/8".into()),
            ..ProxyRules::default()
        };
        let m = rules.matcher().unwrap();
        let via = |uri: &'static str| {
            m.intercept(&Uri::from_static(uri))
                .map(|i| i.uri().authority().unwrap().to_string())
        };
        assert_eq!(
            via("https://api.anthropic.com/v1").as_deref(),
            Some("secure:3128")
        );
        assert_eq!(
            via("http://api.anthropic.com/v1").as_deref(),
            Some("other:8080")
        );
        assert_eq!(via("http://localhost:8080/"), None);
        assert_eq!(via("https://llm.internal.corp/"), None);
        assert_eq!(via("https://10.1.2.3/"), None);
        assert!(!rules.http_has_credentials());
        assert!(ProxyRules::all("http://u:p@proxy:1").http_has_credentials());
        assert!(ProxyRules::default().matcher().is_none());
    }

    #[test]
    fn credentials_are_never_shown() {
        let rules = ProxyRules::all("http://alice:s3cret@proxy:3128/");
        let shown = format!("{rules:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("proxy:3128"), "{shown}");
        assert_eq!(without_credentials("proxy:3128"), "proxy:3128");
        assert_eq!(
            without_credentials("http://a:b@c@proxy:1/x@y"),
            "http://***@proxy:1/x@y"
        );
        let m = rules.matcher().unwrap();
        let intercept = m.intercept(&Uri::from_static("https://h/")).unwrap();
        assert!(!intercept.uri().to_string().contains("s3cret"));
    }

    async fn answer(response: &'static [u8]) -> (Result<(), ProxyError>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if socket.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            socket.write_all(response).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let mut io = TcpStream::connect(addr).await.unwrap();
        let auth = HeaderValue::from_static("Basic YTpi");
        let outcome = connect_tunnel(&mut io, "api.example", 443, Some(&auth), "p:1").await;
        (outcome, proxy.await.unwrap())
    }

    #[tokio::test]
    async fn a_tunnel_is_asked_for_with_the_credentials() {
        let (outcome, head) = answer(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        outcome.unwrap();
        assert_eq!(
            head,
            "CONNECT api.example:443 HTTP/1.1\r\nHost: api.example:443\r\n\
             Proxy-Authorization: Basic YTpi\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_refused_tunnel_names_the_status() {
        let (outcome, _) =
            answer(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                .await;
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "proxy CONNECT refused: 407 Proxy Authentication Required (proxy p:1)"
        );
        let (outcome, _) = answer(b"HTTP/1.1 200 OK\r\n\r\nearly").await;
        assert!(
            outcome
                .unwrap_err()
                .to_string()
                .contains("before the tunnel"),
        );
        let (outcome, _) = answer(b"nonsense\r\n\r\n").await;
        assert!(outcome.unwrap_err().to_string().contains("malformed"));
    }
}
