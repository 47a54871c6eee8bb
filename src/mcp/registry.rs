//! The tool registry: every configured server's tools under their injected names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::McpConfig;
use super::connection::{self, CallError};
use super::content::ToolCallResult;
use super::metrics::{CallOutcome, McpMetrics};
use super::naming;
use super::supervisor::{self, ServerSlot};

/// A tool offered to models.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InjectedTool {
    /// The name the model sees: `bmcp_<server>_<tool>`, sanitized.
    pub name: String,
    /// The configured server name.
    pub server: String,
    /// The server's URL, or `stdio:<command>`.
    pub server_url: String,
    /// The tool's name on its server.
    pub tool: String,
    /// The server's description of the tool.
    pub description: Option<String>,
    /// The JSON Schema object of the arguments.
    pub input_schema: serde_json::Value,
}

/// The state of one server, for reports and readiness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    /// The configured name.
    pub name: String,
    /// URL or `stdio:<command>`.
    pub location: String,
    /// Whether a session is live.
    pub connected: bool,
    /// How many tools it contributes now.
    pub tools: usize,
    /// Why it is not connected, if it is not.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Snapshot {
    tools: Arc<[InjectedTool]>,
    /// Injected name → (server index, raw tool name).
    routes: HashMap<String, (usize, String)>,
}

/// State shared by the registry and its per-server tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) servers: Vec<Arc<ServerSlot>>,
    pub(crate) metrics: Option<McpMetrics>,
    pub(crate) shutdown: CancellationToken,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serializes rebuilds so that a slower one cannot overwrite a newer snapshot.
    rebuilding: Mutex<()>,
    tried: watch::Sender<usize>,
}

impl Shared {
    /// One more server finished its first connection attempt (or a later one).
    pub(crate) fn server_tried(&self) {
        let tried = self.servers.iter().filter(|s| s.tried()).count();
        self.tried.send_replace(tried);
    }

    /// Recompute names and order from every server's current tools.
    pub(crate) fn rebuild(&self) {
        let _guard = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries = Vec::new();
        for (index, slot) in self.servers.iter().enumerate() {
            for tool in slot.tools() {
                entries.push((index, slot, tool));
            }
        }
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(_, slot, tool)| (slot.config.name.as_str(), tool.name.as_ref()))
            .collect();
        let names = naming::assign(&pairs);
        let mut tools = Vec::with_capacity(entries.len());
        let mut routes = HashMap::with_capacity(entries.len());
        for ((index, slot, tool), assigned) in entries.iter().zip(names) {
            if assigned.collided {
                tracing::warn!(server = %slot.config.name, tool = %tool.name, name = %assigned.name,
                    "injected tool name collided with another tool; disambiguated with a hash");
            }
            routes.insert(assigned.name.clone(), (*index, tool.name.to_string()));
            tools.push(InjectedTool {
                name: assigned.name,
                server: slot.config.name.clone(),
                server_url: slot.location.clone(),
                tool: tool.name.to_string(),
                description: tool.description.as_ref().map(|d| d.to_string()),
                input_schema: serde_json::Value::Object((*tool.input_schema).clone()),
            });
        }
        // Sorted by name so the tool list (and the provider's prompt cache) stays stable.
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        let snapshot = Arc::new(Snapshot {
            tools: tools.into(),
            routes,
        });
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Central MCP tools: connects to every configured server and offers their tools.
///
/// `Send + Sync`; share it behind the `Arc` that [`ToolRegistry::start`] returns.
#[derive(Debug)]
pub struct ToolRegistry {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl ToolRegistry {
    /// Start connecting to every server concurrently and return at once. Must be called
    /// inside a Tokio runtime. A server that cannot be reached is retried in the background.
    pub fn start(config: &McpConfig, metrics: Option<McpMetrics>) -> Arc<ToolRegistry> {
        let servers: Vec<Arc<ServerSlot>> = config
            .servers
            .iter()
            .map(|s| Arc::new(ServerSlot::new(s.clone())))
            .collect();
        let shared = Arc::new(Shared {
            servers,
            metrics,
            shutdown: CancellationToken::new(),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            rebuilding: Mutex::new(()),
            tried: watch::Sender::new(0),
        });
        let tasks = (0..shared.servers.len())
            .map(|index| tokio::spawn(supervisor::supervise(shared.clone(), index)))
            .collect();
        Arc::new(ToolRegistry {
            shared,
            tasks: Mutex::new(tasks),
        })
    }

    /// Wait until every server was tried once (connected or failed), or `timeout` passed.
    pub async fn wait_ready(&self, timeout: Duration) {
        let total = self.shared.servers.len();
        let mut tried = self.shared.tried.subscribe();
        let _ = tokio::time::timeout(timeout, tried.wait_for(|n| *n >= total)).await;
    }

    /// The tools to inject now, sorted by name.
    pub fn tools(&self) -> Arc<[InjectedTool]> {
        self.shared.snapshot().tools.clone()
    }

    /// One tool by injected name.
    pub fn get(&self, injected_name: &str) -> Option<InjectedTool> {
        let snapshot = self.shared.snapshot();
        snapshot
            .tools
            .binary_search_by(|t| t.name.as_str().cmp(injected_name))
            .ok()
            .and_then(|i| snapshot.tools.get(i).cloned())
    }

    /// Whether `name` is an injected tool (so its calls belong to the bridge, not the client).
    pub fn is_injected(&self, name: &str) -> bool {
        self.shared.snapshot().routes.contains_key(name)
    }

    /// The state of every server, in configuration order.
    pub fn servers(&self) -> Vec<ServerStatus> {
        self.shared
            .servers
            .iter()
            .map(|slot| {
                let connected = slot.peer().is_some();
                ServerStatus {
                    name: slot.config.name.clone(),
                    location: slot.location.clone(),
                    connected,
                    tools: slot.tools().len(),
                    last_error: if connected { None } else { slot.last_error() },
                }
            })
            .collect()
    }

    /// Call an injected tool with the server's `call_timeout`. Never fails: problems come
    /// back as [`ToolCallResult::invocation_error`].
    pub async fn call(
        &self,
        injected_name: &str,
        arguments: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> ToolCallResult {
        let snapshot = self.shared.snapshot();
        let Some((index, tool)) = snapshot.routes.get(injected_name).cloned() else {
            return ToolCallResult::invocation_error(format!("unknown tool `{injected_name}`"), "");
        };
        let Some(slot) = self.shared.servers.get(index).cloned() else {
            return ToolCallResult::invocation_error(format!("unknown tool `{injected_name}`"), "");
        };
        let server = slot.config.name.as_str();
        let started = Instant::now();
        let (result, outcome) = match slot.peer() {
            None => (
                ToolCallResult::invocation_error(
                    format!("MCP server `{server}` is not connected"),
                    &slot.location,
                ),
                CallOutcome::Error,
            ),
            Some(peer) => {
                let timeout = slot.config.call_timeout;
                let call = connection::call_tool(&peer, &tool, arguments);
                match tokio::time::timeout(timeout, call).await {
                    Err(_) => (
                        ToolCallResult::invocation_error(
                            format!(
                                "the call to `{tool}` on MCP server `{server}` timed out after {timeout:?}"
                            ),
                            &slot.location,
                        ),
                        CallOutcome::Timeout,
                    ),
                    Ok(Err(CallError::Transport(message))) => {
                        // The supervisor pings and reconnects if the session is dead.
                        slot.check.notify_one();
                        (
                            ToolCallResult::invocation_error(
                                format!("MCP server `{server}` failed: {message}"),
                                &slot.location,
                            ),
                            CallOutcome::Error,
                        )
                    }
                    Ok(Err(CallError::Protocol(message))) => (
                        ToolCallResult::invocation_error(
                            format!("MCP server `{server}` failed: {message}"),
                            &slot.location,
                        ),
                        CallOutcome::Error,
                    ),
                    Ok(Ok(result)) => {
                        let result = ToolCallResult::from_mcp(result, &slot.location);
                        let outcome = if result.is_error {
                            CallOutcome::ToolError
                        } else {
                            CallOutcome::Ok
                        };
                        (result, outcome)
                    }
                }
            }
        };
        if let Some(metrics) = &self.shared.metrics {
            metrics.record_call(server, &tool, outcome, started.elapsed().as_secs_f64());
        }
        result
    }

    /// Stop every connection: stdio children are terminated, HTTP sessions closed.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let tasks: Vec<JoinHandle<()>> = {
            let mut guard = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
            guard.drain(..).collect()
        };
        for task in tasks {
            let _ = task.await;
        }
        self.shared.rebuild();
    }
}

impl Drop for ToolRegistry {
    fn drop(&mut self) {
        // Without this the per-server tasks would keep children alive after the last user.
        self.shared.shutdown.cancel();
    }
}
