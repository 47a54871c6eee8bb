//! The interception flow, written once for every wire API: inspect → record start → call
//! upstream → relay (blocking or streaming) while observing → record → end.

pub mod aliases;
pub mod blocking;
mod send;
pub mod streaming;
pub mod tool_loop;
mod watchdog;
pub(crate) use watchdog::Watchdog;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::actor::Actor;
use crate::api::{ApiKind, Observation, Observer, RequestInfo};
use crate::bridge::{BridgeState, Route};
use crate::dump::Dump;
use crate::mcp::ToolCallResult;
use crate::metrics::ModelMetrics;
use crate::provider::ProviderConfig;
use crate::record::{
    InterceptionEndedRecord, InterceptionRecord, ModelThoughtRecord, Outcome, PromptRecord, Record,
    TokenUsageRecord, ToolUsageRecord, new_id,
};
use crate::upstream::Credential;
use tool_loop::{Offered, PendingCall};

/// Who and what a request is about, as known before the upstream call.
pub struct Start<'a> {
    /// The request's owner.
    pub actor: &'a Actor,
    /// What the body asks for.
    pub info: RequestInfo,
    /// The detected client.
    pub client: &'static str,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// The session id from headers, else from the body.
    pub session_id: Option<String>,
    /// How upstream is authenticated.
    pub credential: Credential,
}

/// One bridged request in flight. Ending it records the outcome once; if it is dropped
/// unended (the client went away), it ends as `client_disconnected`.
pub struct Interception {
    /// The interception id (UUIDv7).
    pub id: Uuid,
    state: Arc<BridgeState>,
    provider: Arc<ProviderConfig>,
    api: ApiKind,
    /// The route's metric handles and upstream URL.
    route: Arc<Route>,
    model: String,
    /// The model's metric label (capped) and counters.
    model_metrics: Arc<ModelMetrics>,
    actor_id: String,
    client: &'static str,
    prompt: Option<String>,
    /// What observers of this request's responses need to know about it.
    request: RequestInfo,
    started: Instant,
    /// Upstream requests sent (tries), retries and tool-loop rounds included.
    tries: u32,
    /// Tries that repeated a request after a failure.
    retries: u32,
    /// Calls of [`Interception::send`]: one per tool-loop round.
    rounds: u32,
    last_status: Option<u16>,
    /// The circuit was open: the response is the bridge's own 503.
    breaker_open: bool,
    /// The API dump, when the provider has a `dump_dir`.
    dump: Option<Dump>,
    ended: bool,
}

impl Interception {
    /// Records the start and counts the request in flight.
    pub(crate) fn start(
        state: Arc<BridgeState>,
        provider: Arc<ProviderConfig>,
        api: ApiKind,
        route: Arc<Route>,
        start: Start<'_>,
    ) -> Interception {
        let id = new_id();
        // Observers need only these flags; the prompt (which can be most of a 100 KB
        // request) and the rest go into records and are not copied.
        let request = RequestInfo {
            stream: start.info.stream,
            add_stream_usage: start.info.add_stream_usage,
            ..RequestInfo::default()
        };
        let mut metadata: Map<String, Value> = start.info.metadata;
        if !start.actor.metadata.is_empty() {
            let actor_meta = start
                .actor
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            metadata.insert("actor_metadata".into(), Value::Object(actor_meta));
        }
        state.queue.submit(Record::Interception(InterceptionRecord {
            id,
            initiator_id: start.actor.id.clone(),
            provider: Cow::Borrowed(provider.kind.as_str()),
            provider_name: provider.name.clone(),
            api: Cow::Borrowed(api.as_str()),
            model: start.info.model.clone(),
            client: Cow::Borrowed(start.client),
            user_agent: start.user_agent,
            client_session_id: start.session_id,
            credential_kind: Cow::Borrowed(start.credential.kind),
            credential_hint: start.credential.hint,
            streaming: start.info.stream,
            started_at: Utc::now(),
            metadata,
        }));
        route.metrics.inflight.inc();
        let dump = provider
            .resilience
            .dump_dir
            .as_deref()
            .map(|dir| Dump::open(dir, &id.to_string(), &provider.name, api.as_str()));
        let model_metrics = state.metrics.model(&provider.name, &start.info.model);
        Interception {
            id,
            state,
            provider,
            api,
            route,
            model_metrics,
            model: start.info.model,
            actor_id: start.actor.id.clone(),
            client: start.client,
            prompt: start.info.prompt,
            request,
            started: Instant::now(),
            tries: 0,
            retries: 0,
            rounds: 0,
            last_status: None,
            dump,
            breaker_open: false,
            ended: false,
        }
    }

    /// The wire API.
    pub fn api(&self) -> ApiKind {
        self.api
    }

    /// A fresh observer for one upstream response.
    pub fn observer(&self) -> Box<dyn Observer> {
        self.api.observer(&self.request)
    }

    /// The actor's id, for logs.
    pub fn actor_id(&self) -> &str {
        &self.actor_id
    }

    /// The detected client, for logs.
    pub fn client(&self) -> &'static str {
        self.client
    }

    /// The provider.
    pub fn provider(&self) -> &ProviderConfig {
        &self.provider
    }

    /// Writes response body bytes to the API dump, if there is one.
    pub fn dump_body(&mut self, chunk: &[u8]) {
        if let Some(dump) = &mut self.dump {
            dump.body(chunk);
        }
    }

    fn note(&mut self, text: &str) {
        if let Some(dump) = &mut self.dump {
            dump.note(text);
        }
    }

    /// The longest gap allowed between two chunks of an upstream body.
    pub fn idle_timeout(&self) -> Duration {
        self.provider.resilience.timeouts.idle
    }

    /// The bridge's slow-client watchdog, which every stream registers with.
    pub(crate) fn watchdog(&self) -> &Arc<Watchdog> {
        &self.state.watchdog
    }

    /// Whether the bridge has cancelled in-flight requests: one atomic load, for loops that
    /// check on every step.
    pub fn shutting_down(&self) -> bool {
        self.state
            .shutting_down
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves when the bridge cancels in-flight requests (shutdown grace over).
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.state.cancel.clone().cancelled_owned()
    }

    /// Notes one upstream attempt and its status (if it answered), and its time to headers.
    pub fn upstream_answered(&mut self, status: Option<u16>, sent_at: Instant) {
        self.tries += 1;
        self.last_status = status.or(self.last_status);
        if status.is_some() {
            self.route
                .metrics
                .upstream_ttfb
                .observe(sent_at.elapsed().as_secs_f64());
        }
    }

    /// Records what one upstream response said.
    pub fn observed(&mut self, obs: Observation) {
        self.observed_filtered(obs, &|_| false);
    }

    /// Records what one upstream response said; calls of injected tools are left to the
    /// tool loop, which records them with their results.
    pub fn observed_filtered(&mut self, obs: Observation, injected: &dyn Fn(&str) -> bool) {
        let now = Utc::now();
        let response_id = obs.response_id.unwrap_or_default();
        let q = &self.state.queue;
        let m = &self.model_metrics;
        if let Some(prompt) = self.prompt.take() {
            q.submit(Record::Prompt(PromptRecord {
                id: new_id(),
                interception_id: self.id,
                provider_response_id: response_id.clone(),
                prompt,
                metadata: Map::new(),
                created_at: now,
            }));
            m.prompt();
        }
        if let Some(usage) = obs.usage {
            // In the order of `TOKEN_TYPES`.
            let counts = [
                usage.input,
                usage.output,
                usage.cache_read,
                usage.cache_write,
            ];
            for (kind, n) in counts.into_iter().enumerate() {
                if let Ok(n) = u64::try_from(n)
                    && n > 0
                {
                    m.tokens(kind, n);
                }
            }
            q.submit(Record::TokenUsage(TokenUsageRecord {
                id: new_id(),
                interception_id: self.id,
                provider_response_id: response_id.clone(),
                input_tokens: usage.input,
                output_tokens: usage.output,
                cache_read_input_tokens: usage.cache_read,
                cache_write_input_tokens: usage.cache_write,
                extra: usage.extra,
                created_at: now,
            }));
        }
        for call in obs.tool_calls.into_iter().filter(|c| !injected(&c.name)) {
            m.client_tool_selection();
            q.submit(Record::ToolUsage(ToolUsageRecord {
                id: new_id(),
                interception_id: self.id,
                provider_response_id: response_id.clone(),
                provider_tool_call_id: call.id,
                server_url: None,
                tool: call.name,
                input: call.input,
                injected: false,
                invocation_error: None,
                metadata: call.metadata,
                created_at: now,
            }));
        }
        for thought in obs.thoughts {
            let mut metadata = Map::new();
            metadata.insert("source".into(), Value::String(thought.source.to_owned()));
            q.submit(Record::ModelThought(ModelThoughtRecord {
                id: new_id(),
                interception_id: self.id,
                content: thought.content,
                metadata,
                created_at: now,
            }));
        }
    }

    /// Records an injected call the bridge ran, with its outcome.
    pub fn injected_call(
        &mut self,
        call: &PendingCall,
        result: &ToolCallResult,
        response_id: &str,
    ) {
        let error = result
            .invocation_error
            .clone()
            .or_else(|| result.is_error.then(|| result.to_text()));
        self.record_injected(call, result.server_url.clone(), error, response_id);
    }

    /// Records injected calls the bridge did not run, under the server that offered them.
    pub fn skipped_calls(
        &mut self,
        calls: &[PendingCall],
        response_id: &str,
        client_calls: bool,
        offered: &Offered,
    ) {
        let why = if client_calls {
            "not run: the same turn called client tools, so the turn went to the client"
        } else {
            "not run: tool loop limit reached"
        };
        for call in calls {
            let server_url = offered
                .server_url(&call.name)
                .unwrap_or_default()
                .to_owned();
            self.record_injected(call, server_url, Some(why.to_owned()), response_id);
        }
    }

    fn record_injected(
        &mut self,
        call: &PendingCall,
        server_url: String,
        error: Option<String>,
        response_id: &str,
    ) {
        self.state.queue.submit(Record::ToolUsage(ToolUsageRecord {
            id: new_id(),
            interception_id: self.id,
            provider_response_id: response_id.to_owned(),
            provider_tool_call_id: Some(call.id.clone()),
            server_url: (!server_url.is_empty()).then_some(server_url),
            tool: call.name.clone(),
            input: call.arguments.clone(),
            injected: true,
            invocation_error: error,
            metadata: Map::new(),
            created_at: Utc::now(),
        }));
    }

    /// Ends the interception (once).
    pub fn end(&mut self, outcome: Outcome, detail: Option<String>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let outcome = match outcome {
            Outcome::UpstreamError if self.breaker_open => Outcome::Rejected,
            other => other,
        };
        // A prompt seen but never answered is still worth keeping.
        if self.prompt.is_some() {
            self.observed(Observation::default());
        }
        let mut metadata = Map::new();
        if let Some(detail) = detail {
            metadata.insert("error".into(), Value::String(detail));
        }
        if self.rounds > 1 {
            metadata.insert("upstream_rounds".into(), Value::from(self.rounds));
        }
        self.state
            .queue
            .submit(Record::InterceptionEnded(InterceptionEndedRecord {
                id: self.id,
                ended_at: Utc::now(),
                outcome,
                upstream_status: self.last_status,
                // Tries of the one request, not tool-loop rounds: `attempts - 1` is the
                // number of retries, as the audit queries read it.
                attempts: if self.tries == 0 { 0 } else { 1 + self.retries },
                metadata,
            }));
        let route = &self.route.metrics;
        route.inflight.dec();
        route.duration.observe(self.started.elapsed().as_secs_f64());
        self.model_metrics
            .interception(outcome.as_str(), self.api.as_str(), self.client);
    }
}

impl Drop for Interception {
    fn drop(&mut self) {
        if self.state.cancel.is_cancelled() {
            self.end(Outcome::Failed, Some(SHUTDOWN_CANCELLED.to_owned()));
        } else {
            self.end(Outcome::ClientDisconnected, None);
        }
    }
}

/// Why an interception still running when the shutdown grace period ended was cut off.
pub const SHUTDOWN_CANCELLED: &str = "cancelled: the bridge shut down before it finished";
