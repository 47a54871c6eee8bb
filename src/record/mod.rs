//! What the bridge records about each interception, and the `Recorder` trait that stores it.
//!
//! The request path never talks to a `Recorder` directly: it hands [`Record`]s to the
//! [`pipeline`] (a bounded queue with a batcher), which calls the sink off the hot path.
//! A platform that wants its own store implements [`Recorder`]; the default sink is
//! `SqlRecorder` (sea-orm on SQLite or PostgreSQL).

mod counts;
pub mod log;
pub mod memory;
pub mod pipeline;
pub mod spool;
pub mod sql;

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use counts::TokenCounts;
pub(crate) use counts::prefixed_count_name;
pub use log::LogRecorder;
pub use memory::MemoryRecorder;
pub use pipeline::{Pipeline, PipelineConfig, PipelineMetrics, RecordQueue, ShutdownReport};
pub use sql::{SqlError, SqlRecorder};

/// An interception started: one bridged client request, possibly many upstream calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterceptionRecord {
    /// UUIDv7, also sent to the client as `x-aibridge-interception-id`.
    pub id: Uuid,
    /// The actor who made the request.
    pub initiator_id: String,
    /// Provider kind: `anthropic` or `openai`. (This and the other fixed names below are
    /// `Cow`s so that the bridge hands over its static names without a copy per request.)
    pub provider: Cow<'static, str>,
    /// The configured provider's name (several providers may share a kind).
    pub provider_name: String,
    /// The wire API: `messages`, `chat_completions` or `responses`.
    pub api: Cow<'static, str>,
    /// The model the client asked for.
    pub model: String,
    /// Detected client (`claude-code`, `codex`, `cursor`, …, `unknown`).
    pub client: Cow<'static, str>,
    /// The client's `User-Agent`, if any.
    pub user_agent: Option<String>,
    /// The client's session id, if one could be found.
    pub client_session_id: Option<String>,
    /// How the upstream was authenticated: `centralized` or `byok`.
    pub credential_kind: Cow<'static, str>,
    /// A masked hint of the credential (`sk-a…efgh`), never the secret.
    pub credential_hint: Option<String>,
    /// Whether the client asked for a stream.
    pub streaming: bool,
    /// When the bridge received the request.
    pub started_at: DateTime<Utc>,
    /// Anything else worth keeping: actor metadata, `previous_response_id`, …
    pub metadata: Map<String, Value>,
}

/// How an interception ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The client received a complete response.
    Completed,
    /// The upstream answered with an error status, relayed to the client.
    UpstreamError,
    /// The upstream could not be reached or broke off.
    UpstreamUnavailable,
    /// The request was rejected by the bridge (bad input, limits, circuit open).
    Rejected,
    /// The client went away before the response was complete.
    ClientDisconnected,
    /// The bridge itself failed.
    Failed,
}

impl Outcome {
    /// The stable name stored in the database and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::UpstreamUnavailable => "upstream_unavailable",
            Outcome::Rejected => "rejected",
            Outcome::ClientDisconnected => "client_disconnected",
            Outcome::Failed => "failed",
        }
    }
}

/// An interception ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterceptionEndedRecord {
    /// The interception's id.
    pub id: Uuid,
    /// When the last byte went to the client (or the request failed).
    pub ended_at: DateTime<Utc>,
    /// How it ended.
    pub outcome: Outcome,
    /// The last upstream HTTP status, if the upstream answered.
    pub upstream_status: Option<u16>,
    /// Tries of the upstream request: 1 + retries (summed over the rounds of a tool loop,
    /// whose count is `upstream_rounds` in the metadata); 0 when nothing was sent.
    pub attempts: u32,
    /// Extra detail (error message, tool-loop iterations, …).
    pub metadata: Map<String, Value>,
}

/// Token usage reported by one upstream response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenUsageRecord {
    /// Record id (UUIDv7).
    pub id: Uuid,
    /// The interception it belongs to.
    pub interception_id: Uuid,
    /// The provider's id of the response (`msg_…`, `chatcmpl-…`, `resp_…`).
    pub provider_response_id: String,
    /// Input tokens not read from or written to a cache.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_tokens: i64,
    /// Input tokens written to the prompt cache.
    pub cache_write_input_tokens: i64,
    /// Other token counts by name (`reasoning_tokens`, `ephemeral_5m_input_tokens`, …).
    pub extra: TokenCounts,
    /// When the usage was observed.
    pub created_at: DateTime<Utc>,
}

/// The user's prompt: the text of the last user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Record id (UUIDv7).
    pub id: Uuid,
    /// The interception it belongs to.
    pub interception_id: Uuid,
    /// The provider's response id, once known (empty before).
    pub provider_response_id: String,
    /// The prompt text.
    pub prompt: String,
    /// Extra detail.
    pub metadata: Map<String, Value>,
    /// When the prompt was observed.
    pub created_at: DateTime<Utc>,
}

/// A tool call the model made: a client tool, or an injected MCP tool the bridge ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUsageRecord {
    /// Record id (UUIDv7).
    pub id: Uuid,
    /// The interception it belongs to.
    pub interception_id: Uuid,
    /// The provider's response id that contained the call.
    pub provider_response_id: String,
    /// The provider's id of the call (`toolu_…`, `call_…`).
    pub provider_tool_call_id: Option<String>,
    /// For injected tools, the MCP server's URL (or `stdio:<command>`).
    pub server_url: Option<String>,
    /// The tool's name as the model saw it.
    pub tool: String,
    /// The arguments: parsed JSON, or a string when they were not valid JSON.
    pub input: Value,
    /// Whether the bridge injected (and ran) this tool.
    pub injected: bool,
    /// Why running an injected tool failed, if it did.
    pub invocation_error: Option<String>,
    /// Extra detail (tool type for non-function tools, …).
    pub metadata: Map<String, Value>,
    /// When the call was observed.
    pub created_at: DateTime<Utc>,
}

/// A model thought: thinking block, reasoning summary or commentary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelThoughtRecord {
    /// Record id (UUIDv7).
    pub id: Uuid,
    /// The interception it belongs to.
    pub interception_id: Uuid,
    /// The thought's text.
    pub content: String,
    /// Extra detail; `source` says where it came from (`thinking`, `reasoning_summary`, `commentary`).
    pub metadata: Map<String, Value>,
    /// When the thought was observed.
    pub created_at: DateTime<Utc>,
}

/// Any record, as queued, batched and spooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// See [`InterceptionRecord`].
    Interception(InterceptionRecord),
    /// See [`InterceptionEndedRecord`].
    InterceptionEnded(InterceptionEndedRecord),
    /// See [`TokenUsageRecord`].
    TokenUsage(TokenUsageRecord),
    /// See [`PromptRecord`].
    Prompt(PromptRecord),
    /// See [`ToolUsageRecord`].
    ToolUsage(ToolUsageRecord),
    /// See [`ModelThoughtRecord`].
    ModelThought(ModelThoughtRecord),
}

impl Record {
    /// How many distinct values [`Record::kind`] returns.
    pub const KINDS: usize = 6;

    /// The record kind's stable name, used as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Interception(_) => "interception",
            Record::InterceptionEnded(_) => "interception_ended",
            Record::TokenUsage(_) => "token_usage",
            Record::Prompt(_) => "prompt",
            Record::ToolUsage(_) => "tool_usage",
            Record::ModelThought(_) => "model_thought",
        }
    }

    /// The interception the record belongs to.
    pub fn interception_id(&self) -> Uuid {
        match self {
            Record::Interception(r) => r.id,
            Record::InterceptionEnded(r) => r.id,
            Record::TokenUsage(r) => r.interception_id,
            Record::Prompt(r) => r.interception_id,
            Record::ToolUsage(r) => r.interception_id,
            Record::ModelThought(r) => r.interception_id,
        }
    }
}

/// Why a sink could not store records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The store is unreachable or refused the write; worth retrying.
    #[error("record store unavailable: {0}")]
    Unavailable(String),
    /// The record itself cannot be stored (retrying will not help).
    #[error("record rejected: {0}")]
    Rejected(String),
}

/// A sink for records. One method per kind of record, plus a batch method that the
/// pipeline calls; its default calls the others in turn, and a SQL sink overrides it to
/// write a whole batch in one transaction.
///
/// Implementations must be idempotent per record id: after a failure the pipeline may
/// write the same batch again.
#[async_trait::async_trait]
pub trait Recorder: Send + Sync + 'static {
    /// An interception started.
    async fn record_interception(&self, r: &InterceptionRecord) -> Result<(), RecordError>;
    /// An interception ended.
    async fn record_interception_ended(
        &self,
        r: &InterceptionEndedRecord,
    ) -> Result<(), RecordError>;
    /// Token usage of one upstream response.
    async fn record_token_usage(&self, r: &TokenUsageRecord) -> Result<(), RecordError>;
    /// The user's prompt.
    async fn record_prompt(&self, r: &PromptRecord) -> Result<(), RecordError>;
    /// A tool call.
    async fn record_tool_usage(&self, r: &ToolUsageRecord) -> Result<(), RecordError>;
    /// A model thought.
    async fn record_model_thought(&self, r: &ModelThoughtRecord) -> Result<(), RecordError>;

    /// A batch of records, in order.
    async fn record_batch(&self, records: &[Record]) -> Result<(), RecordError> {
        for record in records {
            match record {
                Record::Interception(r) => self.record_interception(r).await?,
                Record::InterceptionEnded(r) => self.record_interception_ended(r).await?,
                Record::TokenUsage(r) => self.record_token_usage(r).await?,
                Record::Prompt(r) => self.record_prompt(r).await?,
                Record::ToolUsage(r) => self.record_tool_usage(r).await?,
                Record::ModelThought(r) => self.record_model_thought(r).await?,
            }
        }
        Ok(())
    }
}

/// A new record id: UUIDv7, so ids sort by time.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
