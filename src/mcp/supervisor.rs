//! Keeps one server connected: connect with backoff, refresh on `tools/list_changed`,
//! ping now and then, and reconnect when the child dies or the session breaks.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::Tool;
use tokio::sync::{Notify, mpsc};

use super::config::McpServerConfig;
use super::connection::{self, ConnectionError};
use super::registry::Shared;

/// First retry delay after a failed connect; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a connected session is pinged to notice a dead HTTP server.
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// How long a closing session may take to clean up (child exit, HTTP DELETE).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One configured server and what is known about it now.
#[derive(Debug)]
pub struct ServerSlot {
    pub config: McpServerConfig,
    /// URL or `stdio:<command>`.
    pub location: String,
    state: Mutex<SlotState>,
    /// Woken by a call that saw a transport error: check the session now.
    pub check: Notify,
}

#[derive(Debug, Default)]
struct SlotState {
    peer: Option<rmcp::Peer<RoleClient>>,
    /// Filtered, deduplicated tools of the current session.
    tools: Vec<Tool>,
    last_error: Option<String>,
    tried: bool,
}

impl ServerSlot {
    pub fn new(config: McpServerConfig) -> Self {
        Self {
            location: config.location(),
            config,
            state: Mutex::new(SlotState::default()),
            check: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        // The state is plain data; a panic while holding the lock cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer of the live session, if connected.
    pub fn peer(&self) -> Option<rmcp::Peer<RoleClient>> {
        self.state().peer.clone()
    }

    /// The tools of the live session (empty when disconnected).
    pub fn tools(&self) -> Vec<Tool> {
        self.state().tools.clone()
    }

    /// The last connect or refresh error, if the server is not connected.
    pub fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    /// Whether a connection attempt has finished at least once.
    pub fn tried(&self) -> bool {
        self.state().tried
    }

    fn set_connected(&self, peer: rmcp::Peer<RoleClient>, tools: Vec<Tool>) {
        let mut state = self.state();
        state.peer = Some(peer);
        state.tools = tools;
        state.last_error = None;
        state.tried = true;
    }

    fn set_tools(&self, tools: Vec<Tool>) {
        self.state().tools = tools;
    }

    fn set_failed(&self, error: String) {
        let mut state = self.state();
        state.peer = None;
        state.tools.clear();
        state.last_error = Some(error);
        state.tried = true;
    }

    /// Keep the tools the filter permits, once per raw name, sorted by raw name.
    fn filter(&self, tools: Vec<Tool>) -> Vec<Tool> {
        let mut kept: Vec<Tool> = tools
            .into_iter()
            .filter(|t| self.config.filter.permits(&t.name))
            .collect();
        kept.sort_by(|a, b| a.name.cmp(&b.name));
        let before = kept.len();
        kept.dedup_by(|a, b| a.name == b.name);
        if kept.len() != before {
            tracing::warn!(server = %self.config.name, "server listed a tool name twice; kept the first");
        }
        kept
    }
}

/// Why a connected session ended.
enum Ended {
    Shutdown,
    Broken(String),
}

/// Run until shutdown: keep server `index` of `shared` connected.
pub async fn supervise(shared: Arc<Shared>, index: usize) {
    let Some(slot) = shared.servers.get(index).cloned() else {
        return;
    };
    let name = slot.config.name.clone();
    let mut delay = INITIAL_BACKOFF;
    loop {
        let (tx, rx) = mpsc::channel(1);
        let attempt = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            attempt = connect_and_list(&slot, tx) => attempt,
        };
        let session = match attempt {
            Ok(session) => session,
            Err(error) => {
                tracing::warn!(server = %name, location = %slot.location, retry_in = ?delay, "MCP server unavailable: {error}");
                if let Some(metrics) = &shared.metrics {
                    metrics.connect_failed(&name);
                }
                slot.set_failed(error.to_string());
                shared.server_tried();
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        delay = INITIAL_BACKOFF;
        shared.rebuild();
        shared.server_tried();
        if let Some(metrics) = &shared.metrics {
            metrics.connected(1);
        }
        tracing::info!(server = %name, location = %slot.location, tools = slot.tools().len(), "MCP server connected");
        let ended = run_session(&shared, &slot, session, rx).await;
        if let Some(metrics) = &shared.metrics {
            metrics.connected(-1);
        }
        match ended {
            Ended::Shutdown => {
                slot.set_failed("shut down".to_owned());
                return;
            }
            Ended::Broken(reason) => {
                tracing::warn!(server = %name, location = %slot.location, "MCP session lost, reconnecting: {reason}");
                slot.set_failed(reason);
                shared.rebuild();
            }
        }
    }
}

async fn connect_and_list(
    slot: &ServerSlot,
    list_changed: mpsc::Sender<()>,
) -> Result<connection::Session, ConnectionError> {
    let session = connection::connect(&slot.config, list_changed).await?;
    let offers_tools = session
        .peer()
        .peer_info()
        .is_none_or(|info| info.capabilities.tools.is_some());
    if !offers_tools {
        // A server without the tools capability (prompts or resources only) is healthy;
        // it simply has nothing to inject.
        tracing::warn!(server = %slot.config.name, "MCP server offers no tools");
        slot.set_connected(session.peer().clone(), Vec::new());
        return Ok(session);
    }
    let listed = tokio::time::timeout(
        slot.config.connect_timeout,
        connection::list_tools(session.peer()),
    )
    .await
    .map_err(|_| ConnectionError::Timeout(slot.config.connect_timeout))
    .and_then(|r| r);
    match listed {
        Ok(tools) => {
            slot.set_connected(session.peer().clone(), slot.filter(tools));
            Ok(session)
        }
        Err(error) => {
            close(session).await;
            Err(error)
        }
    }
}

async fn run_session(
    shared: &Shared,
    slot: &ServerSlot,
    session: connection::Session,
    mut list_changed: mpsc::Receiver<()>,
) -> Ended {
    let peer = session.peer().clone();
    let cancel = session.cancellation_token();
    let waiting = session.waiting();
    tokio::pin!(waiting);
    let mut pings = tokio::time::interval(PING_INTERVAL);
    pings.tick().await;
    let ended = loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break Ended::Shutdown,
            _ = &mut waiting => return Ended::Broken("the session closed".to_owned()),
            Some(()) = list_changed.recv() => {
                let listed = tokio::time::timeout(
                    slot.config.connect_timeout,
                    connection::list_tools(&peer),
                ).await;
                match listed {
                    Ok(Ok(tools)) => {
                        slot.set_tools(slot.filter(tools));
                        shared.rebuild();
                        tracing::info!(server = %slot.config.name, tools = slot.tools().len(), "MCP tool list refreshed");
                    }
                    Ok(Err(e)) => break Ended::Broken(format!("refreshing tools failed: {e}")),
                    Err(_) => break Ended::Broken("refreshing tools timed out".to_owned()),
                }
            }
            _ = slot.check.notified() => {
                if let Err(e) = ping(slot, &peer).await {
                    break Ended::Broken(e);
                }
            }
            _ = pings.tick() => {
                if let Err(e) = ping(slot, &peer).await {
                    break Ended::Broken(e);
                }
            }
        }
    };
    cancel.cancel();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, waiting).await;
    ended
}

async fn ping(slot: &ServerSlot, peer: &rmcp::Peer<RoleClient>) -> Result<(), String> {
    match tokio::time::timeout(slot.config.connect_timeout, connection::ping(peer)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("ping failed: {e}")),
        Err(_) => Err("ping timed out".to_owned()),
    }
}

async fn close(session: connection::Session) {
    let cancel = session.cancellation_token();
    cancel.cancel();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.waiting()).await;
}
