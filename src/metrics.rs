//! Prometheus metrics (prometheus-client), registered once at start-up. Labels are bounded
//! sets: never prompt text or an actor id.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::FastHashMap;

/// Labels of a finished interception.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterceptionLabels {
    /// Provider name.
    pub provider: String,
    /// Requested model.
    pub model: String,
    /// Outcome (`completed`, `upstream_error`, …).
    pub status: String,
    /// Wire API.
    pub route: String,
    /// Detected client.
    pub client: String,
}

/// Provider and wire API.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Provider name.
    pub provider: String,
    /// Wire API.
    pub route: String,
}

/// A passed-through request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassthroughLabels {
    /// Provider name.
    pub provider: String,
    /// HTTP method.
    pub method: String,
    /// Response status code (`0` when the upstream was unreachable).
    pub status: String,
}

/// Provider and model.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    /// Provider name.
    pub provider: String,
    /// Model.
    pub model: String,
}

/// Tokens by type.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// Provider name.
    pub provider: String,
    /// Model.
    pub model: String,
    /// `input`, `output`, `cache_read`, `cache_write`, or an extra type.
    #[prometheus(flatten)]
    pub kind: TokenType,
}

/// The token type label, named `type`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenType {
    /// The type.
    pub r#type: String,
}

/// A rejected request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Provider name, or `none`.
    pub provider: String,
    /// Why: `invalid_body`, `too_large`, `unauthenticated`, `not_found`.
    pub reason: String,
}

/// One circuit: provider, endpoint (wire API) and model.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    /// Provider name.
    pub provider: String,
    /// Wire API.
    pub endpoint: String,
    /// Model (capped like every model label).
    pub model: String,
}

/// Every metric family the bridge exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `aibridge_interceptions_total`.
    pub interceptions: Family<InterceptionLabels, Counter>,
    /// `aibridge_interceptions_inflight`.
    pub inflight: Family<RouteLabels, Gauge>,
    /// `aibridge_interceptions_duration_seconds`.
    pub duration: Family<RouteLabels, Histogram>,
    /// `aibridge_upstream_ttfb_seconds`: time to the upstream's response headers.
    pub upstream_ttfb: Family<RouteLabels, Histogram>,
    /// `aibridge_passthrough_total`.
    pub passthrough: Family<PassthroughLabels, Counter>,
    /// `aibridge_prompts_total`.
    pub prompts: Family<ModelLabels, Counter>,
    /// `aibridge_tokens_total`.
    pub tokens: Family<TokenLabels, Counter>,
    /// `aibridge_non_injected_tool_selections_total`.
    pub client_tool_selections: Family<ModelLabels, Counter>,
    /// `aibridge_rejected_requests_total`.
    pub rejected: Family<RejectLabels, Counter>,
    /// `aibridge_upstream_retries_total`: upstream attempts repeated after a failure.
    pub retries: Family<RouteLabels, Counter>,
    /// `aibridge_circuit_breaker_*`.
    pub breaker: crate::breaker::BreakerMetrics,
    /// Per model label (capped, see [`Metrics::model`]), per provider: the handles of its
    /// counters. Its keys are the label values in use.
    by_model: Arc<RwLock<ByLabel>>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

impl Metrics {
    /// Creates the families and registers them under the `aibridge_` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            interceptions: Family::default(),
            inflight: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            upstream_ttfb: Family::new_with_constructor(latency_histogram),
            passthrough: Family::default(),
            prompts: Family::default(),
            tokens: Family::default(),
            client_tool_selections: Family::default(),
            rejected: Family::default(),
            retries: Family::default(),
            breaker: crate::breaker::BreakerMetrics::default(),
            by_model: Arc::default(),
        };
        registry.register(
            "interceptions",
            "Bridged requests, by outcome",
            m.interceptions.clone(),
        );
        registry.register(
            "interceptions_inflight",
            "Bridged requests in progress",
            m.inflight.clone(),
        );
        registry.register(
            "interceptions_duration_seconds",
            "Time from request to the last byte sent to the client",
            m.duration.clone(),
        );
        registry.register(
            "upstream_ttfb_seconds",
            "Time from sending a request upstream to its response headers",
            m.upstream_ttfb.clone(),
        );
        registry.register(
            "passthrough",
            "Requests passed through to the upstream untouched",
            m.passthrough.clone(),
        );
        registry.register("prompts", "User prompts seen", m.prompts.clone());
        registry.register(
            "tokens",
            "Tokens reported by the upstream",
            m.tokens.clone(),
        );
        registry.register(
            "non_injected_tool_selections",
            "Client (not injected) tool calls made by the model",
            m.client_tool_selections.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests the bridge refused before calling the upstream",
            m.rejected.clone(),
        );
        registry.register(
            "upstream_retries",
            "Upstream attempts repeated after a retryable failure",
            m.retries.clone(),
        );
        registry.register(
            "circuit_breaker_state",
            "Circuit state per provider, endpoint and model: 0 closed, 1 open, 2 half-open",
            m.breaker.state.clone(),
        );
        registry.register(
            "circuit_breaker_trips",
            "Times a circuit opened",
            m.breaker.trips.clone(),
        );
        registry.register(
            "circuit_breaker_rejects",
            "Requests refused without calling the upstream because the circuit was open",
            m.breaker.rejects.clone(),
        );
        m
    }
}

/// The handles of one provider and wire API's metrics, looked up once and then shared by
/// every request on that route (a lookup builds a label set of owned strings, hashes it and
/// takes the family's lock; a handle is an `Arc`).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    /// `interceptions_inflight{provider,route}`.
    pub inflight: Gauge,
    /// `interceptions_duration_seconds{provider,route}`.
    pub duration: Histogram,
    /// `upstream_ttfb_seconds{provider,route}`.
    pub upstream_ttfb: Histogram,
    /// `upstream_retries_total{provider,route}`.
    pub retries: Counter,
}

impl Metrics {
    /// The route's handles; the series exist (at zero) from this call on.
    pub fn route(&self, provider: &str, route: &str) -> RouteMetrics {
        let labels = RouteLabels {
            provider: provider.to_owned(),
            route: route.to_owned(),
        };
        RouteMetrics {
            inflight: self.inflight.get_or_create_owned(&labels),
            duration: self.duration.get_or_create_owned(&labels),
            upstream_ttfb: self.upstream_ttfb.get_or_create_owned(&labels),
            retries: self.retries.get_or_create_owned(&labels),
        }
    }
}

/// The handles of one provider and model's counters, shared by every request for that model:
/// the families' lookups (owned label strings, SipHash, the family's lock) happen once per
/// series instead of three to five times per request. Each series is still created only
/// when first counted, so `/metrics` shows the same series as with per-request lookups.
#[derive(Debug)]
pub struct ModelMetrics {
    /// The model's label value (capped, see [`Metrics::model`]).
    pub label: String,
    provider: String,
    prompt_family: Family<ModelLabels, Counter>,
    selection_family: Family<ModelLabels, Counter>,
    token_family: Family<TokenLabels, Counter>,
    interception_family: Family<InterceptionLabels, Counter>,
    prompts: OnceLock<Counter>,
    client_tool_selections: OnceLock<Counter>,
    /// Input, output, cache read, cache write.
    tokens: [OnceLock<Counter>; 4],
    /// `interceptions_total` by outcome, route and client: a handful per model.
    ends: Mutex<Vec<(EndLabels, Counter)>>,
}

type EndLabels = (&'static str, &'static str, &'static str);

/// Model label → the handles of each provider that served it (a few).
type ByLabel = FastHashMap<String, Vec<Arc<ModelMetrics>>>;

/// The token types [`ModelMetrics::tokens`] counts, in the order of its handles.
pub const TOKEN_TYPES: [&str; 4] = ["input", "output", "cache_read", "cache_write"];

impl ModelMetrics {
    fn labels(&self) -> ModelLabels {
        ModelLabels {
            provider: self.provider.clone(),
            model: self.label.clone(),
        }
    }

    /// Counts a user prompt.
    pub fn prompt(&self) {
        self.prompts
            .get_or_init(|| self.prompt_family.get_or_create_owned(&self.labels()))
            .inc();
    }

    /// Counts a tool call of the client's own tools.
    pub fn client_tool_selection(&self) {
        self.client_tool_selections
            .get_or_init(|| self.selection_family.get_or_create_owned(&self.labels()))
            .inc();
    }

    /// Adds `n` tokens of type [`TOKEN_TYPES`]`[kind]` (an index past the end is ignored).
    pub fn tokens(&self, kind: usize, n: u64) {
        let (Some(cell), Some(name)) = (self.tokens.get(kind), TOKEN_TYPES.get(kind)) else {
            return;
        };
        cell.get_or_init(|| {
            self.token_family.get_or_create_owned(&TokenLabels {
                provider: self.provider.clone(),
                model: self.label.clone(),
                kind: TokenType {
                    r#type: (*name).to_owned(),
                },
            })
        })
        .inc_by(n);
    }

    /// Counts a finished interception.
    pub fn interception(&self, status: &'static str, route: &'static str, client: &'static str) {
        let key = (status, route, client);
        let mut ends = self.ends.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = ends.iter().find(|(k, _)| *k == key) {
            counter.inc();
            return;
        }
        let counter = self
            .interception_family
            .get_or_create_owned(&InterceptionLabels {
                provider: self.provider.clone(),
                model: self.label.clone(),
                status: status.to_owned(),
                route: route.to_owned(),
                client: client.to_owned(),
            });
        counter.inc();
        ends.push((key, counter));
    }
}

impl Metrics {
    /// The counters of `model` on `provider`. Clients choose the model string, so without a
    /// cap each new string would add time series and a circuit breaker for good: the first
    /// [`MAX_MODEL_LABELS`] distinct names (cut to 64 characters) keep their own label, later
    /// ones share [`OTHER_MODEL`].
    pub fn model(&self, provider: &str, model: &str) -> Arc<ModelMetrics> {
        let label = model_label(model);
        let find = |by_label: &ByLabel| {
            by_label
                .get(capped(by_label, &label))
                .and_then(|list| list.iter().find(|m| m.provider == provider))
                .cloned()
        };
        if let Some(found) = find(&self.by_model.read().unwrap_or_else(PoisonError::into_inner)) {
            return found;
        }
        let mut by_label = self
            .by_model
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = find(&by_label) {
            return found;
        }
        let key = capped(&by_label, &label).to_owned();
        let made = Arc::new(ModelMetrics {
            label: key.clone(),
            provider: provider.to_owned(),
            prompt_family: self.prompts.clone(),
            selection_family: self.client_tool_selections.clone(),
            token_family: self.tokens.clone(),
            interception_family: self.interceptions.clone(),
            prompts: OnceLock::new(),
            client_tool_selections: OnceLock::new(),
            tokens: Default::default(),
            ends: Mutex::default(),
        });
        by_label.entry(key).or_default().push(made.clone());
        made
    }
}

/// The key `label` is counted under: itself while there is room for it, else [`OTHER_MODEL`].
fn capped<'a>(by_label: &ByLabel, label: &'a str) -> &'a str {
    if by_label.len() < MAX_MODEL_LABELS || by_label.contains_key(label) {
        label
    } else {
        OTHER_MODEL
    }
}

/// A fresh registry with the `aibridge` prefix.
pub fn new_registry() -> Registry {
    Registry::with_prefix("aibridge")
}

/// Model names come from clients: cap their length so a label cannot grow without bound.
pub fn model_label(model: &str) -> String {
    model.chars().take(64).collect()
}

/// How many distinct model label values a bridge keeps before the rest become
/// [`OTHER_MODEL`].
pub const MAX_MODEL_LABELS: usize = 256;
/// The label value for models seen after [`MAX_MODEL_LABELS`] others.
pub const OTHER_MODEL: &str = "other";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_capped() {
        let metrics = Metrics::register(&mut new_registry());
        let label = |provider: &str, model: &str| metrics.model(provider, model).label.clone();
        for i in 0..MAX_MODEL_LABELS {
            assert_eq!(label("a", &format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(label("a", "one-too-many"), OTHER_MODEL);
        assert_eq!(label("a", "m0"), "m0");
        // A label in use keeps its slot on every provider; a new one does not get one.
        assert_eq!(label("b", "m0"), "m0");
        assert_eq!(label("b", "new-on-b"), OTHER_MODEL);
        let last = format!("m{}", MAX_MODEL_LABELS - 1);
        assert_eq!(label("a", &last), last);
        assert_eq!(label("a", &"x".repeat(100)), OTHER_MODEL);
        let fresh = Metrics::register(&mut new_registry());
        assert_eq!(fresh.model("a", &"y".repeat(100)).label, "y".repeat(64));
        // One set of handles per provider and label, shared by later requests.
        assert!(Arc::ptr_eq(
            &metrics.model("a", "m1"),
            &metrics.model("a", "m1")
        ));
        assert!(!Arc::ptr_eq(
            &metrics.model("a", "m1"),
            &metrics.model("b", "m1")
        ));
        assert!(Arc::ptr_eq(
            &metrics.model("a", "late-1"),
            &metrics.model("a", "late-2")
        ));
    }
}
