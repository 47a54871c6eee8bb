//! Upstream connections and their reuse.
//!
//! An HTTP/1.1 connection has no task of its own: the request that uses it drives it, and
//! after the request its response body does. So the chunks of an upstream stream that
//! arrived together are decoded and relayed in one go by the relay's task, and go out to
//! the client in one write, instead of crossing from a connection task to the relay one
//! chunk per wake-up (hyper-util's pooled client hands over one chunk at a time). A
//! connection whose body was read to its end goes back to the pool; one dropped before
//! that is closed, since its request cannot be taken back, unless the rest is small and of
//! known length (an error answer left unread before a retry): a task reads it first.
//!
//! An HTTP/2 connection (offered by ALPN) carries many requests at once, so it runs in a
//! task of its own and is shared.

use crate::FastHashMap;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
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
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt;

use super::{BoxError, Connection, Connector};

/// Where a pooled connection goes: an upstream's scheme and authority. The proxy, if any,
/// follows from them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    scheme: Scheme,
    authority: Authority,
}

impl Key {
    /// The key of an absolute URI; `None` for a relative one.
    pub fn of(uri: &Uri) -> Option<Key> {
        Some(Key {
            scheme: uri.scheme()?.clone(),
            authority: uri.authority()?.clone(),
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
    /// The connection failed while the request was sent or its response awaited.
    #[error("request failed")]
    Send(#[source] hyper::Error),
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

/// An HTTP/1.1 connection and the handle to send on it.
#[derive(Debug)]
pub struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
    /// `None` once it has ended: dropping it hands a request it never took back to its
    /// sender, and fails one it took. Boxed: with the TLS state inside it is kilobytes,
    /// and the response that carries it is moved many times per request.
    conn: Option<Box<http1::Connection<Connection, Full<Bytes>>>>,
    /// Requests go to a forwarding proxy: absolute-form URIs.
    proxied: bool,
}

impl H1 {
    /// Drives the connection; `Ready` once it has ended (closed, failed, or done).
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(());
        };
        if let Poll::Ready(ended) = Pin::new(&mut **conn).poll(cx) {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "upstream connection ended");
            }
            self.conn = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Whether this idle connection can take a request: it is still open and hyper has
    /// finished with the previous exchange.
    async fn ready(&mut self) -> bool {
        poll_fn(|cx| {
            if self.poll_conn(cx).is_ready() {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|ready| ready.is_ok())
        })
        .await
    }

    /// Sends `req` and waits for the response head, driving the connection meanwhile. A
    /// request the connection never started to write comes back with the error.
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Full<Bytes>>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        poll_fn(|cx| {
            loop {
                if let Poll::Ready(done) = response.as_mut().poll(cx) {
                    return Poll::Ready(done);
                }
                let ended = self.conn.is_none();
                // The connection is what moves the request; once it has ended (and been
                // dropped), the request has its answer: an error.
                if self.poll_conn(cx).is_pending() || ended {
                    return Poll::Pending;
                }
            }
        })
        .await
    }
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
            let (mut failed, reused) = match taken {
                Taken::Shared { mut sender, reused } => {
                    sender.ready().await.map_err(RequestError::Send)?;
                    match sender.try_send_request(req).await {
                        Ok(resp) => return Ok(resp.map(super::UpstreamBody::Shared)),
                        Err(e) => {
                            // Not offered again: a retry makes a new connection.
                            self.shared
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&key);
                            (e, reused)
                        }
                    }
                }
                Taken::Own { mut conn, reused } => {
                    for_http1(&mut req, conn.proxied);
                    match conn.send(req).await {
                        Ok(resp) => {
                            let pool = Arc::clone(&self);
                            return Ok(resp.map(|incoming| {
                                super::UpstreamBody::Own(OwnBody {
                                    incoming: Some(incoming),
                                    conn: Some(conn),
                                    home: Some((pool, key.clone())),
                                    drain: true,
                                })
                            }));
                        }
                        Err(e) => (e, reused),
                    }
                }
            };
            match failed.take_message() {
                Some(unsent) if reused => {
                    req = unsent;
                    *req.uri_mut() = uri.clone();
                }
                _ => return Err(RequestError::Send(failed.into_error())),
            }
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
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| RequestError::Connect(Box::new(e)))?;
        Ok(Taken::Own {
            conn: H1 {
                sender,
                conn: Some(Box::new(conn)),
                proxied: connected.is_proxied(),
            },
            reused: false,
        })
    }
}

/// An HTTP/1.1 request names its host in `Host` and its target in origin form, or in
/// absolute form to a forwarding proxy.
fn for_http1(req: &mut Request<Full<Bytes>>, proxied: bool) {
    let uri = req.uri().clone();
    if !req.headers().contains_key(HOST)
        && let Some(host) = uri.host()
    {
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        let value = match uri.port_u16() {
            Some(port) if port != default_port => HeaderValue::try_from(format!("{host}:{port}")),
            _ => HeaderValue::try_from(host),
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

/// The body of a response on an HTTP/1.1 connection, which drives that connection while
/// it is read and gives it back to the pool at its end.
#[derive(Debug)]
pub struct OwnBody {
    /// `None` once dropped (it may be handed to a task that reads its rest).
    incoming: Option<Incoming>,
    /// `None` once the connection has ended or gone back to the pool.
    conn: Option<H1>,
    home: Option<(Arc<Pool>, Key)>,
    /// Whether a small unread rest is still read when the body is dropped.
    drain: bool,
}

impl OwnBody {
    fn release(&mut self) {
        if let (Some(conn), Some((pool, key))) = (self.conn.take(), self.home.take())
            && conn.conn.is_some()
        {
            pool.put(key, conn);
        }
    }

    /// Polls the body, driving the connection when no frame is ready yet.
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut driven = false;
        loop {
            let Some(incoming) = self.incoming.as_mut() else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(frame) = Pin::new(&mut *incoming).poll_frame(cx) {
                if frame.is_none() || incoming.is_end_stream() {
                    self.release();
                }
                return Poll::Ready(frame);
            }
            // After one drive the connection has decoded what it could (or ended, which
            // ends the body): a body still pending waits for the socket.
            match self.conn.as_mut() {
                Some(conn) if !driven => {
                    driven = true;
                    let _ = conn.poll_conn(cx);
                }
                _ => return Poll::Pending,
            }
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Incoming::is_end_stream)
    }

    pub(super) fn size_hint(&self) -> http_body::SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// The most of a dropped body's unread rest, of known length, that is still read so that its
/// connection can be reused: an error answer left unread before a retry, say.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long that rest may take to arrive.
const DRAIN_TIME: Duration = Duration::from_secs(1);

impl Drop for OwnBody {
    fn drop(&mut self) {
        let Some(incoming) = self.incoming.take() else {
            return;
        };
        if incoming.is_end_stream() {
            // Read to its end, or empty: the connection can carry the next request.
            self.release();
            return;
        }
        let small = incoming
            .size_hint()
            .exact()
            .is_some_and(|rest| rest <= DRAIN_LIMIT);
        let (Some(conn), Some(home)) = (self.conn.take(), self.home.take()) else {
            return;
        };
        if !self.drain || !small || conn.conn.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = OwnBody {
            incoming: Some(incoming),
            conn: Some(conn),
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

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let svc = service_fn(|_| async {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        let client = build_client(
            Duration::from_secs(1),
            tls_config().unwrap(),
            &ProxyRules::default(),
        );
        let pool = Arc::new(Pool::new(
            client.pool.connector.clone(),
            Duration::from_millis(100),
        ));
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let req = request(http::Method::GET, uri, http::HeaderMap::new(), Bytes::new());
        let resp = Arc::clone(&pool).send(req).await.unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert_eq!(pool.idle_count(), 1);
        // Nothing else uses the pool: the sweeper closes it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 0);
    }
}
