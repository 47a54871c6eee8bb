//! One MCP client session: connect over stdio or streamable HTTP, list tools, call one.

use std::collections::HashMap;
use std::process::Stdio;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, Implementation,
    PaginatedRequestParams, PingRequest, Tool,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::config::{McpServerConfig, McpTransport};

/// Longest tool list we accept from one server; a bound against a looping cursor.
const MAX_LIST_PAGES: usize = 100;

/// Why connecting or a request failed. Messages carry no header values or env values.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The child process could not be spawned.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be configured.
    #[error("invalid HTTP header configuration")]
    Headers,
    /// The MCP handshake failed.
    #[error("MCP handshake failed: {0}")]
    Handshake(String),
    /// The handshake did not finish in time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A request failed.
    #[error("{0}")]
    Request(String),
}

/// Receives server notifications; forwards `tools/list_changed` to the supervisor.
#[derive(Debug, Clone)]
pub struct EventHandler {
    list_changed: mpsc::Sender<()>,
}

impl ClientHandler for EventHandler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        // A full channel already holds a pending refresh; one is enough.
        let _ = self.list_changed.try_send(());
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.client_info = Implementation::new("aibridge", env!("CARGO_PKG_VERSION"));
        config
    }
}

/// A live session with one server.
pub type Session = RunningService<RoleClient, EventHandler>;

/// Connect and complete the MCP handshake. `list_changed` receives tool-list notifications.
pub async fn connect(
    server: &McpServerConfig,
    list_changed: mpsc::Sender<()>,
) -> Result<Session, ConnectionError> {
    let handler = EventHandler { list_changed };
    let handshake = async {
        match &server.transport {
            McpTransport::Stdio { command, args, env } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args);
                for (name, value) in env {
                    cmd.env(name, value.expose());
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|source| ConnectionError::Spawn {
                        command: command.clone(),
                        source,
                    })?;
                if let Some(stderr) = stderr {
                    forward_stderr(server.name.clone(), stderr);
                }
                handler
                    .serve(transport)
                    .await
                    .map_err(|e| ConnectionError::Handshake(e.to_string()))
            }
            McpTransport::Http { url, headers } => {
                let mut custom = HashMap::with_capacity(headers.len());
                for (name, value) in headers {
                    let name = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| ConnectionError::Headers)?;
                    let mut value = http::HeaderValue::from_str(value.expose())
                        .map_err(|_| ConnectionError::Headers)?;
                    value.set_sensitive(true);
                    custom.insert(name, value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom)
                    .reinit_on_expired_session(true);
                let transport = StreamableHttpClientTransport::from_config(config);
                handler
                    .serve(transport)
                    .await
                    .map_err(|e| ConnectionError::Handshake(e.to_string()))
            }
        }
    };
    tokio::time::timeout(server.connect_timeout, handshake)
        .await
        .map_err(|_| ConnectionError::Timeout(server.connect_timeout))?
}

/// Log the child's stderr at debug level: useful when a server misbehaves, noisy otherwise.
fn forward_stderr(server: String, stderr: tokio::process::ChildStderr) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(server = %server, "mcp server stderr: {line}");
        }
    });
}

/// List every tool, following `nextCursor`.
pub async fn list_tools(peer: &rmcp::Peer<RoleClient>) -> Result<Vec<Tool>, ConnectionError> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let mut params = PaginatedRequestParams::default();
        params.cursor = cursor.take();
        let page = peer.list_tools(Some(params)).await.map_err(describe)?;
        tools.extend(page.tools);
        match page.next_cursor {
            Some(next) if !next.is_empty() => cursor = Some(next),
            _ => return Ok(tools),
        }
    }
    Err(ConnectionError::Request(format!(
        "tools/list did not end after {MAX_LIST_PAGES} pages"
    )))
}

/// Call a tool once (no timeout here; the registry applies it).
pub async fn call_tool(
    peer: &rmcp::Peer<RoleClient>,
    tool: &str,
    arguments: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<CallToolResult, CallError> {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = arguments;
    match peer.call_tool_once(params).await {
        Ok(CallToolResponse::Complete(result)) => Ok(result),
        Ok(_) => Err(CallError::Protocol(
            "the server asked for client input or a task, which the bridge does not support"
                .to_owned(),
        )),
        Err(e) => Err(match e {
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                CallError::Transport(describe(e).to_string())
            }
            other => CallError::Protocol(describe(other).to_string()),
        }),
    }
}

/// A failed call, split by whether the session is probably dead.
#[derive(Debug)]
pub enum CallError {
    /// The transport is broken; the session should be replaced.
    Transport(String),
    /// The server answered with a JSON-RPC error or something unexpected.
    Protocol(String),
}

/// Check that the session still answers.
pub async fn ping(peer: &rmcp::Peer<RoleClient>) -> Result<(), ConnectionError> {
    let request = rmcp::model::ClientRequest::PingRequest(PingRequest {
        method: Default::default(),
        extensions: Default::default(),
    });
    peer.send_request(request).await.map(drop).map_err(describe)
}

/// A request error as text. JSON-RPC errors keep the server's message; transport errors
/// keep rmcp's description, which names neither header values nor env values.
fn describe(error: ServiceError) -> ConnectionError {
    let text = match error {
        ServiceError::McpError(e) => format!("server error {}: {}", e.code.0, e.message),
        ServiceError::TransportClosed => "the connection to the server is closed".to_owned(),
        ServiceError::Timeout { timeout } => format!("no answer within {timeout:?}"),
        other => other.to_string(),
    };
    ConnectionError::Request(text)
}
