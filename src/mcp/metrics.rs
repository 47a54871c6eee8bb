//! Prometheus metrics of the MCP tool registry.
//!
//! Labels are the configured server name, the raw tool name and a fixed outcome word; never
//! arguments or results.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How an injected tool call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CallOutcome {
    /// The tool answered normally.
    Ok,
    /// The tool answered with `isError: true`.
    ToolError,
    /// The call did not complete within `call_timeout`.
    Timeout,
    /// Unknown tool, server not connected, transport or protocol error.
    Error,
}

impl CallOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::ToolError => "tool_error",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for CallOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// Labels of `aibridge_injected_tool_invocations_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvocationLabels {
    /// Configured server name.
    pub server: String,
    /// Raw tool name on that server.
    pub tool: String,
    /// How the call ended.
    pub outcome: CallOutcome,
}

/// Labels carrying only the server name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// Configured server name.
    pub server: String,
}

type DurationFamily = Family<ServerLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms … ~82 s
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The MCP metric families; cheap to clone (they share their storage).
#[derive(Debug, Clone)]
pub struct McpMetrics {
    invocations: Family<InvocationLabels, Counter>,
    durations: DurationFamily,
    connected: Gauge,
    connect_failures: Family<ServerLabels, Counter>,
}

impl McpMetrics {
    /// Create the families and register them.
    pub fn register(registry: &mut Registry) -> McpMetrics {
        let metrics = McpMetrics {
            invocations: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            connected: Gauge::default(),
            connect_failures: Family::default(),
        };
        registry.register(
            "injected_tool_invocations",
            "Calls of injected MCP tools, by server, raw tool name and outcome",
            metrics.invocations.clone(),
        );
        registry.register(
            "mcp_call_duration_seconds",
            "Duration of MCP tool calls, by server",
            metrics.durations.clone(),
        );
        registry.register(
            "mcp_servers_connected",
            "MCP servers currently connected",
            metrics.connected.clone(),
        );
        registry.register(
            "mcp_connect_failures",
            "Failed attempts to connect to an MCP server, by server",
            metrics.connect_failures.clone(),
        );
        metrics
    }

    pub(crate) fn record_call(&self, server: &str, tool: &str, outcome: CallOutcome, secs: f64) {
        self.invocations
            .get_or_create(&InvocationLabels {
                server: server.to_owned(),
                tool: tool.to_owned(),
                outcome,
            })
            .inc();
        self.durations
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .observe(secs);
    }

    pub(crate) fn connected(&self, delta: i64) {
        self.connected.inc_by(delta);
    }

    pub(crate) fn connect_failed(&self, server: &str) {
        self.connect_failures
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .inc();
    }
}
