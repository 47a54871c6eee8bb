//! An MCP server with test tools, for the bridge tests.
//!
//! Tools: `echo` (returns its `text`), `add` (`a + b`), `fail` (an `isError` result),
//! `slow` (sleeps `ms` milliseconds), `image` (a 1×1 PNG), `resource` (embedded text and
//! blob resources), `pid` (the server's process id, so a test can kill a stdio child) and
//! `toggle` (adds or removes the tool `extra` and sends `notifications/tools/list_changed`).
//! Extra echo tools with arbitrary names can be added to test name sanitization.
//!
//! `tools/list` is paginated ([`Options::page_size`] tools per page) so clients must follow
//! `nextCursor`. It serves over stdio (the `aibridge-test-mcp` binary) or over streamable HTTP
//! in-process ([`serve_http`]).

mod tools;

pub use tools::TINY_PNG;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use tokio_util::sync::CancellationToken;

/// How a test server behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tools per `tools/list` page (at least 1).
    pub page_size: usize,
    /// Names of extra tools that echo their `text`, e.g. `"a.b"` to test sanitization.
    pub extra_tools: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            page_size: 3,
            extra_tools: Vec::new(),
        }
    }
}

/// The server state shared by every session of one server.
#[derive(Debug, Default)]
struct Shared {
    options: Options,
    /// Whether `toggle` has switched the tool `extra` on.
    extra_enabled: AtomicBool,
}

/// The MCP handler; cheap to clone, one per session.
#[derive(Debug, Clone, Default)]
pub struct TestServer {
    shared: Arc<Shared>,
}

impl TestServer {
    /// A server with these options.
    pub fn new(options: Options) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                extra_enabled: AtomicBool::new(false),
            }),
        }
    }

    fn all_tools(&self) -> Vec<rmcp::model::Tool> {
        let extra = self.shared.extra_enabled.load(Ordering::SeqCst);
        tools::list(&self.shared.options.extra_tools, extra)
    }
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "aibridge-test-mcp",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let all = self.all_tools();
        let start = match request.and_then(|r| r.cursor) {
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| ErrorData::invalid_params("bad cursor", None))?,
            None => 0,
        };
        let size = self.shared.options.page_size.max(1);
        let end = (start + size).min(all.len());
        let page = all.get(start..end).unwrap_or_default().to_vec();
        let mut result = ListToolsResult::with_all_items(page);
        if end < all.len() {
            result.next_cursor = Some(end.to_string());
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let name = request.name.as_ref();
        if name == "toggle" {
            let was = self.shared.extra_enabled.fetch_xor(true, Ordering::SeqCst);
            // The notification may fail if the client has gone; the toggle still holds.
            let _ = context.peer.notify_tool_list_changed().await;
            let state = if was { "disabled" } else { "enabled" };
            return Ok(tools::text(format!("extra tool {state}")).into());
        }
        let extra_enabled = self.shared.extra_enabled.load(Ordering::SeqCst);
        let known_extra = self.shared.options.extra_tools.iter().any(|t| t == name)
            || (name == "extra" && extra_enabled);
        if known_extra {
            return tools::call("echo", &args).await.map(Into::into);
        }
        tools::call(name, &args).await.map(Into::into)
    }
}

/// A running streamable HTTP test server; stopped when dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    cancel: CancellationToken,
}

impl HttpServer {
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: closes the listener and every session.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serve over streamable HTTP on `addr` (use `127.0.0.1:0` for a free port).
pub async fn serve_http(addr: SocketAddr, options: Options) -> std::io::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let server = TestServer::new(options);
    let config =
        StreamableHttpServerConfig::default().with_cancellation_token(cancel.child_token());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let shutdown = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(HttpServer { addr, cancel })
}

/// Serve on this process's stdin/stdout until the client closes them.
pub async fn serve_stdio(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let running = TestServer::new(options)
        .serve(rmcp::transport::stdio())
        .await?;
    running.waiting().await?;
    Ok(())
}
