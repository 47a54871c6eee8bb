//! The inner agentic loop: when the model calls injected (`bmcp_…`) tools, the bridge runs
//! them on their MCP servers, appends the results to the conversation and calls upstream
//! again, until no injected call is left or the iteration cap is hit. The client sees one
//! response in its own API.
//!
//! A turn that calls both injected and client tools goes to the client as it is, with the
//! injected calls hidden and not run (recorded with an invocation error saying so): the
//! client runs its tools, and the model may call the injected tool again on the next turn.
//! Both the client's conversation and the one sent upstream stay valid. (Responses stored
//! upstream keep state the client cannot see, so there such turns are avoided instead: see
//! `ResponsesLoop::inject_tools`.)

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Response};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::blocking::{read_body, read_capped};
use super::{Interception, SHUTDOWN_CANCELLED};
use crate::api::{ErrorKind, Observer};
use crate::bridge::{BridgeState, error_response, tag};
use crate::mcp::{InjectedTool, ToolCallResult, ToolRegistry};
use crate::record::Outcome;
use crate::sse::{SseDecoder, SseEvent};
use crate::upstream::{UpstreamResponse, client_headers, error_chain};

/// Where injected tools come from. The MCP [`ToolRegistry`] is the real one; embedders and
/// tests may plug in their own.
#[async_trait::async_trait]
pub trait ToolSource: Send + Sync + 'static {
    /// The tools to offer now, in a stable order. Calls of these names in the answer to a
    /// request belong to the bridge, even if the source's tools change meanwhile.
    fn tools(&self) -> Arc<[InjectedTool]>;
    /// Runs one call (with the server's timeout).
    async fn call(&self, name: &str, arguments: Option<Map<String, Value>>) -> ToolCallResult;
}

#[async_trait::async_trait]
impl ToolSource for ToolRegistry {
    fn tools(&self) -> Arc<[InjectedTool]> {
        ToolRegistry::tools(self)
    }
    async fn call(&self, name: &str, arguments: Option<Map<String, Value>>) -> ToolCallResult {
        ToolRegistry::call(self, name, arguments).await
    }
}

/// A tool call found in a model response.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCall {
    /// The provider's call id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments (an object, or the raw value when the model sent something else).
    pub arguments: Value,
}

/// The per-API half of the loop: how tools are offered, found, answered and hidden.
pub trait LoopApi: Send + Sync + 'static {
    /// Adds the injected tools to the request, after the client's own.
    fn inject_tools(&self, body: &mut Value, tools: &[InjectedTool]);
    /// Makes the next call answer without tools (the loop cap was hit).
    fn forbid_tools(&self, body: &mut Value);
    /// The tool calls in a response (blocking shape), in order.
    fn calls(&self, response: &Value) -> Vec<PendingCall>;
    /// Appends the model's turn and the injected calls' results to the conversation.
    fn append_turn(
        &self,
        body: &mut Value,
        response: &Value,
        results: &[(PendingCall, ToolCallResult)],
    );
    /// The fields of the client's request that this API's response objects echo, as the
    /// client sent them (or as their defaults): the final response shows these instead of
    /// the bridge's own edits (injected tools, a forced `tool_choice`). None by default.
    fn echoed(&self, _request: &Value) -> Map<String, Value> {
        Map::new()
    }
    /// Folds a response into what the client gets: earlier visible output kept, injected
    /// calls hidden, usage summed.
    fn merge(&self, earlier: Option<Value>, next: Value, injected: &dyn Fn(&str) -> bool) -> Value;
    /// A stream rewriter for one client stream, given the client's request as sent (before
    /// injection).
    fn rewriter(&self, request: &Value) -> Box<dyn StreamRewriter>;
}

/// Turns several upstream streams into one client stream.
pub trait StreamRewriter: Send + Sync + 'static {
    /// A new upstream response begins.
    fn begin(&mut self);
    /// One upstream event: what (if anything) the client gets now goes into `out`.
    fn on_event(&mut self, event: &SseEvent, injected: &dyn Fn(&str) -> bool, out: &mut Vec<Bytes>);
    /// The upstream response ended: it, in blocking shape.
    fn end(&mut self) -> Value;
    /// The client's stream ends: the held closing events, with cumulative usage.
    fn finish(&mut self, out: &mut Vec<Bytes>);
    /// An event that keeps the client's connection alive while tools run.
    fn keepalive(&self) -> Bytes;
    /// After [`StreamRewriter::finish`]: the response id the client was shown and the
    /// upstream id it stands for, when they differ and the latter is the one to continue
    /// from.
    fn response_alias(&self) -> Option<(String, String)> {
        None
    }
}

/// The injected tools offered in one request, by name: the calls that belong to the bridge
/// are decided by what was offered, not by what the source offers later.
#[derive(Debug, Default, Clone)]
pub struct Offered {
    /// Injected name → the server's URL (or `stdio:<command>`).
    servers: HashMap<String, String>,
}

impl Offered {
    /// The names and servers of `tools`.
    pub fn new(tools: &[InjectedTool]) -> Offered {
        Offered {
            servers: tools
                .iter()
                .map(|t| (t.name.clone(), t.server_url.clone()))
                .collect(),
        }
    }

    /// Whether `name` was offered as an injected tool.
    pub fn contains(&self, name: &str) -> bool {
        self.servers.contains_key(name)
    }

    /// The server of an offered tool.
    pub fn server_url(&self, name: &str) -> Option<&str> {
        self.servers.get(name).map(String::as_str)
    }
}

/// Sets the fields a response echoes from its request back to what the client sent; a
/// field the response does not carry is not added.
pub fn restore_echo(response: &mut Value, echo: &Map<String, Value>) {
    if let Some(obj) = response.as_object_mut() {
        for (key, value) in echo {
            if let Some(field) = obj.get_mut(key) {
                *field = value.clone();
            }
        }
    }
}

/// What the loop needs besides the interception.
pub struct LoopSetup {
    /// The tool source.
    pub tools: Arc<dyn ToolSource>,
    /// The injected tools offered in this request.
    pub offered: Offered,
    /// The API's half.
    pub api: &'static dyn LoopApi,
    /// Upstream URL.
    pub url: http::Uri,
    /// Upstream headers.
    pub headers: HeaderMap,
    /// The request body with tools injected.
    pub body: Value,
    /// Tool rounds before the model is made to answer.
    pub max_iterations: u32,
    /// How often a streaming client gets a keep-alive event while tools run and the next
    /// upstream round is awaited.
    pub keepalive: Duration,
    /// The request fields response objects echo, as the client sent them
    /// ([`LoopApi::echoed`]).
    pub echo: Map<String, Value>,
    /// For a streaming client: the rewriter made from the client's own request.
    pub rewriter: Option<Box<dyn StreamRewriter>>,
}

const LIMIT_MESSAGE: &str = "tool loop limit reached: answer without calling more tools";

async fn send(
    state: &BridgeState,
    ic: &mut Interception,
    setup: &LoopSetup,
) -> Result<UpstreamResponse, String> {
    let body = serde_json::to_vec(&setup.body).map_err(|e| e.to_string())?;
    ic.send(&state.http, &setup.url, &setup.headers, Bytes::from(body))
        .await
}

/// Runs every injected call of a turn concurrently and records each.
async fn run_calls(
    ic: &mut Interception,
    tools: &dyn ToolSource,
    calls: Vec<PendingCall>,
    response_id: &str,
) -> Vec<(PendingCall, ToolCallResult)> {
    let futures = calls.into_iter().map(|call| async move {
        let arguments = match &call.arguments {
            Value::Object(map) => Some(map.clone()),
            Value::Null => None,
            other => {
                let mut map = Map::new();
                map.insert("input".into(), other.clone());
                Some(map)
            }
        };
        let result = tools.call(&call.name, arguments).await;
        (call, result)
    });
    let results = futures_util::future::join_all(futures).await;
    for (call, result) in &results {
        ic.injected_call(call, result, response_id);
    }
    results
}

/// Answers the bridge's calls of one round and appends the assistant turn and the results
/// to the next upstream request. At the cap the calls are not run: the model gets an error
/// result for each and no tools in the next round, and the audit keeps the calls as not run.
async fn answer_calls(
    ic: &mut Interception,
    setup: &mut LoopSetup,
    own: Vec<PendingCall>,
    value: &Value,
    response_id: &str,
    round: u32,
) {
    let results = if round == setup.max_iterations {
        setup.api.forbid_tools(&mut setup.body);
        ic.skipped_calls(&own, response_id, false, &setup.offered);
        limit_results(own)
    } else {
        run_calls(ic, &*setup.tools, own, response_id).await
    };
    setup.api.append_turn(&mut setup.body, value, &results);
}

fn limit_results(calls: Vec<PendingCall>) -> Vec<(PendingCall, ToolCallResult)> {
    calls
        .into_iter()
        .map(|c| (c, ToolCallResult::invocation_error(LIMIT_MESSAGE, "")))
        .collect()
}

/// Splits a turn's calls into injected and client ones.
fn partition(offered: &Offered, calls: Vec<PendingCall>) -> (Vec<PendingCall>, Vec<PendingCall>) {
    calls.into_iter().partition(|c| offered.contains(&c.name))
}

/// Awaits `work`, sending the client a keep-alive event every `every` meanwhile.
async fn with_keepalive<T>(
    work: impl Future<Output = T>,
    every: Duration,
    ping: &Bytes,
    tx: &mpsc::Sender<Bytes>,
) -> Result<T, Stop> {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every);
    // A client slow to take the pings gets the next one an interval later, not a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            _ = ticker.tick() => {
                tx.send(ping.clone()).await.map_err(|_| Stop::ClientGone)?;
            }
        }
    }
}

/// The loop for a blocking client request.
pub async fn run_blocking(
    state: Arc<BridgeState>,
    mut ic: Interception,
    mut setup: LoopSetup,
) -> Response<Body> {
    let kind = ic.provider().kind;
    let cap = state.limits.max_response_bytes;
    let offered = setup.offered.clone();
    let injected = |name: &str| offered.contains(name);
    let mut earlier: Option<Value> = None;
    let mut round = 0u32;
    loop {
        let mut resp = match send(&state, &mut ic, &setup).await {
            Ok(resp) => resp,
            Err(message) => {
                ic.end(Outcome::UpstreamUnavailable, Some(message.clone()));
                return error_response(kind, ErrorKind::Upstream, &message, Some(ic.id));
            }
        };
        if !resp.status().is_success() {
            return super::blocking::relay_error(ic, resp, cap).await;
        }
        let status = resp.status();
        let headers = client_headers(resp.headers(), false);
        let body = match read_body(&mut ic, &mut resp, cap, Outcome::UpstreamUnavailable).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let mut observer = ic.observer();
        observer.on_body(&body);
        let obs = observer.take();
        let response_id = obs.response_id.clone().unwrap_or_default();
        ic.observed_filtered(obs, &injected);
        let Ok(value) = serde_json::from_slice::<Value>(&body) else {
            ic.end(Outcome::Completed, None);
            let mut out = Response::new(Body::from(body));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            tag(&mut out, ic.id);
            return out;
        };
        let (own, client) = partition(&offered, setup.api.calls(&value));
        if own.is_empty() || !client.is_empty() || round > setup.max_iterations {
            if !own.is_empty() {
                ic.skipped_calls(&own, &response_id, !client.is_empty(), &offered);
            }
            let mut merged = setup.api.merge(earlier, value, &injected);
            restore_echo(&mut merged, &setup.echo);
            ic.end(Outcome::Completed, None);
            let mut out = Response::new(Body::from(merged.to_string()));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            tag(&mut out, ic.id);
            return out;
        }
        answer_calls(&mut ic, &mut setup, own, &value, &response_id, round).await;
        earlier = Some(setup.api.merge(earlier, value, &injected));
        round += 1;
    }
}

/// The loop for a streaming client request. The first upstream call is made before the
/// client gets its status, so an upstream error reaches it as a real HTTP error.
pub async fn run_streaming(
    state: Arc<BridgeState>,
    mut ic: Interception,
    setup: LoopSetup,
) -> Response<Body> {
    let kind = ic.provider().kind;
    let cap = state.limits.max_response_bytes;
    let first = match send(&state, &mut ic, &setup).await {
        Ok(resp) => resp,
        Err(message) => {
            ic.end(Outcome::UpstreamUnavailable, Some(message.clone()));
            return error_response(kind, ErrorKind::Upstream, &message, Some(ic.id));
        }
    };
    if !first.status().is_success() {
        return super::blocking::relay_error(ic, first, cap).await;
    }
    let status = first.status();
    let headers = client_headers(first.headers(), false);
    let id = ic.id;
    // Small and bounded: a slow client holds the loop back instead of growing a buffer
    // (and the watchdog logs it).
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let watch = super::watchdog::ClientWatch::start(&ic);
    tokio::spawn(drive_stream(state, ic, setup, first, tx));
    let body = Body::from_stream(super::watchdog::watched_channel(rx, watch));
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    tag(&mut out, id);
    out
}

/// Why the stream task stopped early.
enum Stop {
    ClientGone,
    /// The client still has to be told.
    Upstream(String),
    /// The upstream's own error event already went to the client.
    Reported(String),
}

async fn forward(tx: &mpsc::Sender<Bytes>, out: &mut Vec<Bytes>) -> Result<(), Stop> {
    for bytes in out.drain(..) {
        tx.send(bytes).await.map_err(|_| Stop::ClientGone)?;
    }
    Ok(())
}

async fn drive_stream(
    state: Arc<BridgeState>,
    mut ic: Interception,
    mut setup: LoopSetup,
    first: UpstreamResponse,
    tx: mpsc::Sender<Bytes>,
) {
    let api = ic.api();
    let offered = setup.offered.clone();
    let injected = |name: &str| offered.contains(name);
    let mut rewriter = match setup.rewriter.take() {
        Some(rewriter) => rewriter,
        None => setup.api.rewriter(&setup.body),
    };
    let ping = rewriter.keepalive();
    let every = setup.keepalive;
    let mut next = first;
    let mut round = 0u32;
    let mut out = Vec::new();
    let idle = ic.idle_timeout();
    let shutdown = ic.cancelled();
    // The observer of the upstream response being relayed, kept outside the work so that
    // what it saw is still recorded when the work is cancelled.
    let mut current: Option<Box<dyn Observer>> = None;
    let work = async {
        loop {
            rewriter.begin();
            let observer = current.insert(ic.observer());
            let mut decoder = SseDecoder::default();
            let upstream = next.body_mut();
            loop {
                let Ok(next) = tokio::time::timeout(idle, upstream.chunk()).await else {
                    return Err(Stop::Upstream(format!(
                        "upstream stream stalled: no data for {idle:?}"
                    )));
                };
                let chunk = next.map_err(|e| {
                    Stop::Upstream(format!("upstream stream broke off: {}", error_chain(&e)))
                })?;
                let Some(chunk) = chunk else { break };
                ic.dump_body(&chunk);
                decoder.push(&chunk);
                while let Some(event) = decoder.next_event() {
                    observer.on_event(&event);
                    rewriter.on_event(&event, &injected, &mut out);
                }
                forward(&tx, &mut out).await?;
            }
            if let Some(rest) = decoder.finish() {
                out.push(rest);
            }
            let obs = observer.take();
            let upstream_error = obs.error.clone();
            let response_id = obs.response_id.clone().unwrap_or_default();
            ic.observed_filtered(obs, &injected);
            if let Some(error) = upstream_error {
                forward(&tx, &mut out).await?;
                return Err(Stop::Reported(error));
            }
            let value = rewriter.end();
            let (own, client) = partition(&offered, setup.api.calls(&value));
            if own.is_empty() || !client.is_empty() || round > setup.max_iterations {
                if !own.is_empty() {
                    ic.skipped_calls(&own, &response_id, !client.is_empty(), &offered);
                }
                rewriter.finish(&mut out);
                // Known before the client can send its next turn.
                if let Some((shown, real)) = rewriter.response_alias() {
                    state.response_aliases.insert(shown, real);
                }
                forward(&tx, &mut out).await?;
                return Ok(());
            }
            // Running the tools and waiting for the next round's headers (retries included)
            // can take long: the client gets a keep-alive event at least every `every`.
            let step = async {
                answer_calls(&mut ic, &mut setup, own, &value, &response_id, round).await;
                send(&state, &mut ic, &setup).await
            };
            let mut resp = with_keepalive(step, every, &ping, &tx)
                .await?
                .map_err(Stop::Upstream)?;
            if !resp.status().is_success() {
                let status = resp.status();
                let cap = state.limits.max_response_bytes;
                let text = match read_capped(&mut resp, cap, idle).await {
                    Ok(body) => String::from_utf8_lossy(&body).into_owned(),
                    Err(_) => String::new(),
                };
                return Err(Stop::Upstream(format!(
                    "upstream status {status} inside the tool loop: {}",
                    text.chars().take(300).collect::<String>()
                )));
            }
            next = resp;
            round += 1;
        }
    };
    // A client that goes away (or a shutdown) drops the work at whatever it awaits: the
    // upstream request and any running tool calls are cancelled with it.
    let result: Result<(), Stop> = tokio::select! {
        result = work => result,
        () = tx.closed() => Err(Stop::ClientGone),
        () = shutdown => Err(Stop::Upstream(SHUTDOWN_CANCELLED.to_owned())),
    };
    if result.is_err()
        && let Some(mut observer) = current.take()
    {
        ic.observed_filtered(observer.take(), &injected);
    }
    match result {
        Ok(()) => ic.end(Outcome::Completed, None),
        Err(Stop::ClientGone) => ic.end(Outcome::ClientDisconnected, None),
        Err(Stop::Upstream(message)) => {
            let _ = tx
                .send(api.stream_error_event(ErrorKind::Upstream, &message))
                .await;
            let outcome = if message == SHUTDOWN_CANCELLED {
                Outcome::Failed
            } else {
                Outcome::UpstreamError
            };
            ic.end(outcome, Some(message));
        }
        Err(Stop::Reported(message)) => ic.end(Outcome::UpstreamError, Some(message)),
    }
}
