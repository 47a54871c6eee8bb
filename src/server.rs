//! The `serve` application: the bridge behind an auth layer, plus `/healthz`, `/readyz`
//! and `/metrics`; and the serving threads that run it.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use prometheus_client::registry::Registry;

use crate::actor::{AuthError, Authenticator};
use crate::api::ErrorKind;
use crate::bridge::{RequestBridge, error_response};

/// Shared by the probes: not ready while starting, ready once started, and not ready again
/// for good once shutdown begins.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicU8>);

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

impl Readiness {
    /// Marks the process ready, unless shutdown already began: start-up work that finishes
    /// late (waiting for MCP servers) must not turn a stopping process ready again.
    /// Returns whether it became ready.
    pub fn mark_ready(&self) -> bool {
        self.0
            .compare_exchange(STARTING, READY, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Marks the process as shutting down; it never becomes ready again.
    pub fn begin_shutdown(&self) {
        self.0.store(STOPPING, Ordering::SeqCst);
    }

    /// Whether the process takes traffic.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == READY
    }
}

#[derive(Clone)]
struct AuthLayerState {
    bridge: RequestBridge,
    auth: Arc<Authenticator>,
}

/// Builds the application router.
pub fn app(
    bridge: RequestBridge,
    auth: Authenticator,
    registry: Arc<Registry>,
    ready: Readiness,
) -> Router {
    let auth_state = AuthLayerState {
        bridge: bridge.clone(),
        auth: Arc::new(auth),
    };
    let bridged =
        Router::new()
            .fallback_service(bridge)
            .layer(axum::middleware::from_fn_with_state(
                auth_state,
                authenticate,
            ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { metrics(&registry) }
            }),
        )
        .merge(bridged)
}

fn metrics(registry: &Registry) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => (
            [(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Resolves the actor for requests under a provider prefix; answers 401 in the provider's
/// format when there is none.
async fn authenticate(
    State(state): State<AuthLayerState>,
    mut req: Request,
    next: Next,
) -> Response<Body> {
    let Some((kind, provider)) = state
        .bridge
        .provider_for(req.uri().path())
        .map(|(p, _)| (p.kind, p.name.clone()))
    else {
        return next.run(req).await;
    };
    match state.auth.resolve(req.headers()) {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(e @ (AuthError::Missing | AuthError::InvalidKey)) => {
            state.bridge.count_rejected(&provider, "unauthenticated");
            error_response(kind, ErrorKind::Authentication, &e.to_string(), None)
        }
    }
}

/// Connections the kernel may hold, fully opened, before the bridge accepts them. The 128 that
/// `std` and tokio ask for overflowed when a thousand clients connected at once: a quarter to
/// two fifths of them lost their SYN and waited for its retransmit a second later
/// (docs/performance.md, round 12). The kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` whose queue holds [`LISTEN_BACKLOG`] connections, with
/// `SO_REUSEADDR` as `TcpListener::bind` sets it (a restarted bridge can listen again while
/// its old connections linger in `TIME_WAIT`).
///
/// # Errors
/// When the socket cannot be made, bound or put to listening.
///
/// # Panics
/// Outside a tokio runtime with I/O enabled (tokio registers the listener with it).
pub fn listen(addr: std::net::SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

thread_local! {
    /// Which serving thread this is, from 1; 0 on any other thread.
    static SERVING_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// The serving thread ([`serve_on_threads`]) the caller runs on, numbered from 1, or 0 on any
/// other thread (a multi-threaded runtime's workers, tests). Per-thread state such as the
/// upstream connection pool is keyed by it.
pub fn serving_thread() -> usize {
    SERVING_THREAD.with(Cell::get)
}

/// Serves `router` on `listener` with `threads` serving threads, each running its own
/// single-threaded runtime, until `stop` turns true (or its sender is dropped); then stops
/// accepting, lets every connection finish its requests (idle keep-alive connections are
/// closed) and returns.
///
/// Why not one multi-threaded runtime: on a small machine most of a relayed request's CPU
/// besides the HTTP work is moving tasks between workers and waking idle ones (futex calls,
/// context switches, a shared run queue). Here a connection, its requests, their upstream
/// connections and everything they spawn stay on one thread from accept to close; the one
/// hop per connection is from the accepting task to the thread that serves it. A request
/// blocks nothing of another thread's connections; recording already leaves the request path
/// through a queue. A new connection goes to the thread with the fewest open connections (in
/// turn when they hold as many), so threads whose clients left are refilled first.
///
/// # Errors
/// When a serving thread or its runtime cannot be started.
pub async fn serve_on_threads(
    listener: tokio::net::TcpListener,
    router: Router,
    threads: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> io::Result<()> {
    let threads = threads.max(1);
    let open: Arc<[AtomicUsize]> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let mut handoff = Vec::with_capacity(threads);
    let mut finished = Vec::with_capacity(threads);
    for n in 1..=threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let router = router.clone();
        std::thread::Builder::new()
            .name(format!("aibridge-serve-{n}"))
            .spawn(move || {
                SERVING_THREAD.with(|t| t.set(n));
                runtime.block_on(serve_handed(rx, router));
                // The runtime goes first: tasks still spawned (an idle-connection sweep) end.
                drop(runtime);
                drop(done_tx);
            })?;
        handoff.push(tx);
        finished.push(done_rx);
    }
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: retrying at once would spin.
                tracing::error!(error = %e, "accept failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Streamed events are small writes: without TCP_NODELAY, Nagle holds each one back
        // until the client's delayed ACK (~40 ms per stream on Linux).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let mut tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        // A serving thread only stops early if it panicked outside a connection's task;
        // the connection goes to another one rather than being dropped.
        for _ in 0..threads {
            let thread = least_loaded(&open, next);
            next = (thread + 1) % threads;
            let counted = OpenConnection::count(&open, thread);
            match handoff[thread].send((tcp, counted)) {
                Ok(()) => break,
                Err(back) => {
                    tracing::error!(thread = thread + 1, "a serving thread has stopped");
                    let (returned, counted) = back.0;
                    drop(counted);
                    // Never chosen again.
                    open[thread].store(usize::MAX / 2, Ordering::Relaxed);
                    tcp = returned;
                }
            }
        }
    }
    drop(listener);
    drop(handoff);
    for done in finished {
        let _ = done.await;
    }
    Ok(())
}

/// The serving thread for a new connection: the one with the fewest open connections, the
/// first of them from `next` on.
fn least_loaded(open: &[AtomicUsize], next: usize) -> usize {
    let threads = open.len();
    (0..threads)
        .map(|i| (next + i) % threads)
        .min_by_key(|&thread| open[thread].load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// One open connection of a serving thread, counted until dropped (when the connection ends,
/// or when it could not be served).
struct OpenConnection {
    open: Arc<[AtomicUsize]>,
    thread: usize,
}

impl OpenConnection {
    fn count(open: &Arc<[AtomicUsize]>, thread: usize) -> OpenConnection {
        open[thread].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            open: Arc::clone(open),
            thread,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection handed to a serving thread, with its count.
type Handed = (std::net::TcpStream, OpenConnection);

/// Errors of one connection, not of the listener: the next accept is unaffected.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A serving thread's loop: serves the connections handed to it until the accepting side
/// stops, then shuts them down gracefully.
async fn serve_handed(mut handed: tokio::sync::mpsc::UnboundedReceiver<Handed>, router: Router) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    while let Some((tcp, counted)) = handed.recv().await {
        let tcp = match tokio::net::TcpStream::from_std(tcp) {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "cannot serve a handed-over connection");
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(counted);
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::{Readiness, least_loaded, listen, serve_on_threads, serving_thread};

    /// Nothing accepts here: the kernel completes each handshake into the listen queue, so
    /// every connection the queue has room for connects at once, and one past it loses its
    /// SYN and waits a second for the retransmit. With the 128 of `TcpListener::bind` the
    /// 130th waited.
    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connections() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        if let Err(e) = mock_upstream::connect_burst(addr, Duration::from_millis(500)).await {
            panic!("{e}");
        }
    }

    /// Sends `GET path` on an open connection and reads one response; returns its body.
    async fn ask(conn: &mut TcpStream, path: &str) -> String {
        let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 1024];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response ended");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + length {
                return text[end + 4..end + 4 + length].to_owned();
            }
        }
    }

    fn thread_router() -> Router {
        Router::new()
            .route("/thread", get(|| async { serving_thread().to_string() }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            )
    }

    /// [`thread_router`] on two serving threads: its address, its stop switch, its task.
    async fn serve_two() -> (
        std::net::SocketAddr,
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve_on_threads(listener, thread_router(), 2, stop_rx));
        (addr, stop, server)
    }

    /// Opens `n` connections one after the other, each asked once which thread serves it
    /// before the next opens (so the order of accepts is known).
    async fn connect(addr: std::net::SocketAddr, n: usize) -> Vec<(TcpStream, String)> {
        let mut conns = Vec::new();
        for _ in 0..n {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let thread = ask(&mut conn, "/thread").await;
            conns.push((conn, thread));
        }
        conns
    }

    /// Stops serving and waits for `serve_on_threads` to return.
    async fn stop_and_wait(
        stop: tokio::sync::watch::Sender<bool>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serving ends once stopped and idle")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn connections_are_handed_out_in_turn_and_stay_on_their_thread() {
        let (addr, stop, server) = serve_two().await;
        let mut conns = connect(addr, 4).await;
        let threads: Vec<&str> = conns.iter().map(|(_, first)| first.as_str()).collect();
        assert_eq!(threads, ["1", "2", "1", "2"]);
        for _ in 0..3 {
            for (conn, first) in &mut conns {
                assert_eq!(&ask(conn, "/thread").await, first);
            }
        }
        // Not on a serving thread: the test's own runtime.
        assert_eq!(serving_thread(), 0);
        stop_and_wait(stop, server).await;
    }

    #[test]
    fn the_thread_with_fewest_connections_is_chosen_and_ties_go_in_turn() {
        let open = |counts: &[usize]| -> Vec<AtomicUsize> {
            counts.iter().map(|&n| AtomicUsize::new(n)).collect()
        };
        assert_eq!(least_loaded(&open(&[0, 0, 0]), 0), 0);
        assert_eq!(least_loaded(&open(&[0, 0, 0]), 2), 2);
        assert_eq!(least_loaded(&open(&[1, 1, 0]), 0), 2);
        assert_eq!(least_loaded(&open(&[3, 1, 1]), 0), 1);
        assert_eq!(least_loaded(&open(&[3, 1, 1]), 2), 2);
        assert_eq!(least_loaded(&open(&[5]), 0), 0);
    }

    #[tokio::test]
    async fn a_thread_whose_connections_closed_is_refilled_first() {
        let (addr, stop, server) = serve_two().await;
        let mut conns = connect(addr, 4).await;
        // Both of thread 1's connections close; thread 2 keeps its two.
        conns.retain(|(_, thread)| thread != "1");
        assert_eq!(conns.len(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let more = connect(addr, 2).await;
        let threads: Vec<&str> = more.iter().map(|(_, thread)| thread.as_str()).collect();
        assert_eq!(threads, ["1", "1"]);
        drop((conns, more));
        stop_and_wait(stop, server).await;
    }

    #[tokio::test]
    async fn stopping_finishes_the_requests_under_way_and_refuses_new_connections() {
        let (addr, stop, server) = serve_two().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let slow = tokio::spawn(async move { ask(&mut conn, "/slow").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).unwrap();
        assert_eq!(slow.await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serving ends once the slow request is answered")
            .unwrap()
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn readiness_never_returns_after_shutdown_began() {
        let ready = Readiness::default();
        assert!(!ready.is_ready());
        assert!(ready.mark_ready());
        assert!(ready.is_ready());
        ready.begin_shutdown();
        assert!(!ready.is_ready());
        assert!(!ready.mark_ready());
        assert!(!ready.is_ready());
    }

    #[test]
    fn start_up_finishing_after_the_signal_leaves_the_process_unready() {
        let ready = Readiness::default();
        ready.begin_shutdown();
        assert!(!ready.mark_ready());
        assert!(!ready.is_ready());
    }
}
