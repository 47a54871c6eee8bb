//! The HTTP server: accept loop, request capture, scripted or smart answer.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::body::ChunkBody;
use crate::script::{MockBody, MockResponse};
use crate::smart;
use crate::{MockOptions, ReceivedRequest};

/// State shared by the accept loop, every connection and the test's handle.
pub(crate) struct Shared {
    pub(crate) options: MockOptions,
    pub(crate) queue: Mutex<VecDeque<MockResponse>>,
    /// Scripted responses for one exact path (any route, model or not), consulted first.
    pub(crate) path_queues: Mutex<HashMap<String, VecDeque<MockResponse>>>,
    pub(crate) requests: Mutex<Vec<ReceivedRequest>>,
    pub(crate) arrived: Notify,
    /// Stored Responses (id → the input and output items they hold), oldest first.
    pub(crate) stored: Mutex<VecDeque<(String, Vec<serde_json::Value>)>>,
    ids: AtomicU64,
}

impl Shared {
    pub(crate) fn new(options: MockOptions) -> Shared {
        Shared {
            options,
            queue: Mutex::new(VecDeque::new()),
            path_queues: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            stored: Mutex::new(VecDeque::new()),
            ids: AtomicU64::new(0),
        }
    }

    /// The next id number; ids are deterministic per mock instance.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Locks a mutex, ignoring poisoning: a test that panicked must not hide its cause behind ours.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Accepts connections until the task is aborted.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                if shared.options.log {
                    eprintln!("mock upstream: accept failed: {err}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // SSE deltas must leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The service error that makes hyper drop the connection without answering.
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted reset before headers")
    }
}

impl std::error::Error for ResetConnection {}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ChunkBody>, ResetConnection> {
    let (parts, incoming) = req.into_parts();
    // A client that hangs up mid-body gets no answer worth sending.
    let body = match incoming.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(ResetConnection),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
    let route = smart::Route::parse(&parts.method, parts.uri.path(), &parts.headers)
        .with_query(parts.uri.query());

    if shared.options.record_requests {
        lock(&shared.requests).push(ReceivedRequest {
            method: parts.method.to_string(),
            path_and_query: path_and_query.to_owned(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        shared.arrived.notify_waiters();
    }

    let for_path = {
        let mut queues = lock(&shared.path_queues);
        if queues.is_empty() {
            None
        } else {
            queues
                .get_mut(parts.uri.path())
                .and_then(VecDeque::pop_front)
        }
    };
    let scripted = match for_path {
        Some(scripted) => Some(scripted),
        None if route.is_model_route() => lock(&shared.queue).pop_front(),
        None => None,
    };
    let refused = smart::refuse_wrong_key(&shared, &route, &parts.headers);
    let response = match (refused, scripted) {
        (Some(refused), _) => refused,
        (None, Some(scripted)) => scripted_response(scripted).await?,
        (None, None) => smart::answer(&shared, &route, &body).await,
    };
    if shared.options.log {
        eprintln!(
            "{} {} -> {}",
            parts.method,
            path_and_query,
            response.status().as_u16()
        );
    }
    Ok(response)
}

async fn scripted_response(scripted: MockResponse) -> Result<Response<ChunkBody>, ResetConnection> {
    let body = match scripted.body {
        MockBody::Full(bytes) => ChunkBody::full(bytes),
        MockBody::Chunks(chunks) => ChunkBody::chunks(chunks, false),
        MockBody::CutAfter(chunks) => ChunkBody::chunks(chunks, true),
        MockBody::ResetBeforeHeaders => return Err(ResetConnection),
        MockBody::StallBeforeHeaders(wait) => {
            tokio::time::sleep(wait).await;
            ChunkBody::full(Bytes::new())
        }
    };
    let mut builder = Response::builder().status(scripted.status);
    for (name, value) in &scripted.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // An invalid scripted status or header is a broken test: answer 500 so it shows.
    Ok(builder.body(body).unwrap_or_else(|err| {
        let mut resp = Response::new(ChunkBody::full(Bytes::from(format!(
            "mock upstream: invalid scripted response: {err}"
        ))));
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp
    }))
}
