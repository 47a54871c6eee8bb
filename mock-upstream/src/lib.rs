//! A mock model provider for tests, demos and benchmarks.
//!
//! It speaks Anthropic Messages, OpenAI Chat Completions and OpenAI Responses on real HTTP
//! (`127.0.0.1:0`). Tests may [`MockUpstream::enqueue`] scripted [`MockResponse`]s (fixtures,
//! transport faults); each request to a model route (`/v1/messages`, `/v1/chat/completions`,
//! `/v1/responses`) consumes one. With an empty queue the mock answers in **smart mode**.
//!
//! ```no_run
//! # async fn demo() {
//! use mock_upstream::{MockResponse, MockUpstream};
//! let mock = MockUpstream::start().await;
//! mock.enqueue(MockResponse::sse_fixture("anthropic/tool_use.sse"));
//! mock.enqueue_for_path("/v1/models", MockResponse::json(500, r#"{"error":"boom"}"#));
//! // … point the bridge at mock.url(), send requests …
//! let got = mock.wait_for_requests(1, std::time::Duration::from_secs(5)).await;
//! assert_eq!(got[0].path_and_query, "/v1/messages");
//! # }
//! ```
//!
//! # Smart mode
//!
//! Routes (a leading `/v1` is optional and may be repeated): `POST /v1/messages`,
//! `POST /v1/messages/count_tokens`, `POST /v1/chat/completions`, `POST /v1/responses`,
//! `GET /v1/models`, `GET /v1/models/{id}`. `/v1/models` answers in Anthropic's shape when the
//! request carries `anthropic-version`, else in OpenAI's; unknown paths answer 404 in the same
//! provider's error format.
//!
//! The *prompt* is the text of the last user message. Directives inside it:
//! - `[[tool:NAME {json}]]` — call tool `NAME` (it must be in the request's `tools`) with that
//!   input (default `{}`); several directives make parallel calls. For a Responses `custom` tool
//!   the input is the JSON string's value (or the raw JSON text).
//! - `[[text-then-tool:NAME {json}]]` — same, preceded by the text `Calling NAME.`.
//! - `[[thinking]]` — an Anthropic `thinking` block / a Responses `reasoning` item first.
//! - `[[cached:N]]` — report `N` cached input tokens.
//! - `[[error:overloaded]]` — Anthropic: `event: error` (`overloaded_error`) after
//!   `message_start` (blocking: status 529); Chat: a `data: {"error":…}` chunk; Responses: an
//!   `error` event. `[[error:failed]]` — Responses: `response.failed`.
//! - `[[status:CODE]]` — that status with the provider's error body.
//!
//! When the last message carries tool results, the answer is the text
//! `Tool result: <results joined with " | ">` (directives inside the results are honoured, so a
//! tool that echoes `[[tool:…]]` keeps a tool loop going). Otherwise the answer is
//! `Mock answer: <prompt>` with the prompt cut to 200 characters.
//!
//! # Deterministic usage
//!
//! - `input_tokens` = 10 + number of messages (Anthropic `messages`, Chat `messages`
//!   including system, Responses `input` items; a string `input` counts 1). Cached tokens are
//!   0 unless `[[cached:N]]`; Anthropic reports them as `cache_read_input_tokens` (not part
//!   of `input_tokens`), OpenAI as `cached_tokens` (part of prompt/input tokens, which become
//!   10 + messages + N).
//! - `output_tokens` = 1 + text deltas + thinking deltas (2 when thinking) + 2 per tool call
//!   (tool arguments always stream in 2 deltas). Text streams in `text_deltas` pieces
//!   ([`MockOptions`], default 4; the binary's default is 20), fewer only for shorter texts.
//!   With the defaults a plain answer costs 5 output tokens, one tool call 3, two calls 5,
//!   thinking + answer 7; Responses `reasoning_tokens` = thinking deltas.
//! - Ids count up per mock instance: `msg_mock000001`, `toolu_mock000002`,
//!   `chatcmpl-mock000001`, `call_mock000002`, `resp_mock000001`, …; `created` is fixed
//!   at 1767225600.

mod body;
mod net;
mod script;
mod server;
mod smart;
mod transcript;

#[cfg(test)]
mod fixture_checks;
#[cfg(test)]
mod http_checks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use net::{LISTEN_BACKLOG, connect_burst, listen};
pub use script::{IntoBody, MockBody, MockResponse, fixture, fixtures_dir, split_sse_events};
pub use transcript::{SseEvent, parse_sse};

use server::{Shared, lock};

/// Smart-mode and server options.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// How many deltas a text answer streams in.
    pub text_deltas: usize,
    /// Delay before each streamed delta (and, summed, before a blocking answer).
    pub delta_delay: Duration,
    /// Keep every request for [`MockUpstream::requests`]; off in the binary so it never grows.
    pub record_requests: bool,
    /// Print one line per request to stderr.
    pub log: bool,
    /// Answer 401 (in the provider's format) to every request whose `x-api-key` or
    /// `Authorization: Bearer` is not this key.
    pub required_key: Option<String>,
}

impl Default for MockOptions {
    fn default() -> MockOptions {
        MockOptions {
            text_deltas: 4,
            delta_delay: Duration::ZERO,
            record_requests: true,
            log: false,
            required_key: None,
        }
    }
}

/// A request as the mock received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path and query, e.g. `/v1/models?limit=2`.
    pub path_and_query: String,
    /// All request headers.
    pub headers: http::HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A running mock provider; the server stops when this is dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockUpstream {
    /// Starts a mock with default options on `127.0.0.1:0`.
    ///
    /// Panics if the loopback port cannot be bound: tests cannot run without it.
    pub async fn start() -> MockUpstream {
        MockUpstream::start_with(MockOptions::default()).await
    }

    /// Starts a mock with these options on `127.0.0.1:0`.
    pub async fn start_with(options: MockOptions) -> MockUpstream {
        match TcpListener::bind("127.0.0.1:0").await {
            Ok(listener) => MockUpstream::serve(listener, options),
            Err(err) => panic!("mock upstream: cannot bind 127.0.0.1:0: {err}"),
        }
    }

    /// Serves on an already bound listener (the binary uses this).
    pub fn serve(listener: TcpListener, options: MockOptions) -> MockUpstream {
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("mock upstream: listener has no address: {err}"),
        };
        let shared = Arc::new(Shared::new(options));
        let task = tokio::spawn(server::run(listener, shared.clone()));
        MockUpstream { addr, shared, task }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a scripted response for the next request to a model route.
    pub fn enqueue(&self, response: MockResponse) {
        lock(&self.shared.queue).push_back(response);
    }

    /// Queues a scripted response for the next request to exactly `path` (e.g.
    /// `/v1/models` or `/v1/files`), on any route; it takes precedence over [`Self::enqueue`].
    pub fn enqueue_for_path(&self, path: &str, response: MockResponse) {
        lock(&self.shared.path_queues)
            .entry(path.to_owned())
            .or_default()
            .push_back(response);
    }

    /// How many scripted responses are still queued (model-route queue only).
    pub fn queued(&self) -> usize {
        lock(&self.shared.queue).len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Returns every request received so far and forgets them.
    pub fn take_requests(&self) -> Vec<ReceivedRequest> {
        std::mem::take(&mut *lock(&self.shared.requests))
    }

    /// Waits until at least `n` requests arrived or `timeout` passed, then returns them all.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so an arrival in between is not missed.
            let mut arrived = std::pin::pin!(self.shared.arrived.notified());
            arrived.as_mut().enable();
            {
                let requests = lock(&self.shared.requests);
                if requests.len() >= n {
                    return requests.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.requests();
            }
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
