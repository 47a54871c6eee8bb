//! Central MCP tools: the servers in `[mcp]`, their tools under injected names, and calls.
//!
//! [`ToolRegistry::start`] connects to every configured server concurrently (streamable
//! HTTP or a stdio child, through `rmcp`) and returns at once. A server that does not
//! answer is logged, counted and retried with backoff; it offers no tools until it
//! answers. Each server's tools are listed (following pagination), filtered by its
//! `allow`/`deny` regexes, named `bmcp_<server>_<tool>` (see [`naming`]) and sorted by
//! name so the tool list — and the provider's prompt cache — stays stable. A
//! `notifications/tools/list_changed` refreshes a server's tools; a dead child or HTTP
//! session is replaced.
//!
//! [`ToolRegistry::call`] calls a tool with the server's `call_timeout` and returns a
//! [`ToolCallResult`] in a neutral shape (text, images, embedded resources, `isError`).
//! Transport errors and timeouts come back as an `invocation_error` string that carries
//! no secret: header values and child environment values are [`Secret`]s, which print as
//! `***` in `Debug` output and never reach logs or errors.

pub mod config;
pub mod connection;
pub mod content;
pub mod metrics;
pub mod naming;
pub mod registry;
pub mod report;
mod secret;
mod supervisor;

pub use config::{
    McpConfig, McpConfigError, McpServerConfig, McpTransport, RawMcpConfig, RawMcpServer,
    ToolFilter, validate,
};
pub use content::{ToolCallResult, ToolResultContent};
pub use metrics::McpMetrics;
pub use registry::{InjectedTool, ServerStatus, ToolRegistry};
pub use report::{McpReportError, tools_report};
pub use secret::Secret;
