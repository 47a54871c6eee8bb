//! The MCP tool registry against real MCP servers over real transports.
//!
//! - `test_server`: our `aibridge-test-mcp` in-process over streamable HTTP, and its binary
//!   spawned over stdio;
//! - `real_servers`: `@modelcontextprotocol/server-everything` and `mcp-server-time`,
//!   installed by `scripts/setup-test-deps.sh`;
//! - `config`: validation errors and secrets.

mod config;
mod real_servers;
mod reconnect;
mod test_server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aibridge::mcp::{self, McpConfig, RawMcpConfig, ToolRegistry};

/// Upper bound for things that should happen "soon" (reconnects, refreshes).
const EVENTUALLY: Duration = Duration::from_secs(30);

/// Validate a TOML `[mcp]` table with a fixed environment.
pub fn config(toml_text: &str) -> McpConfig {
    try_config(toml_text, &[]).unwrap()
}

/// Validate a TOML `[mcp]` table; `vars` is the whole environment.
pub fn try_config(toml_text: &str, vars: &[(&str, &str)]) -> Result<McpConfig, String> {
    #[derive(serde::Deserialize)]
    struct File {
        mcp: RawMcpConfig,
    }
    let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    let env = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    mcp::validate(file.mcp, &env).map_err(|e| e.to_string())
}

/// Start a registry and wait until every server was tried once.
pub async fn started(config: &McpConfig) -> Arc<ToolRegistry> {
    let registry = ToolRegistry::start(config, None);
    registry.wait_ready(EVENTUALLY).await;
    registry
}

/// The injected names, in registry order.
pub fn names(registry: &ToolRegistry) -> Vec<String> {
    registry.tools().iter().map(|t| t.name.clone()).collect()
}

/// Poll `check` until it holds, failing the test after [`EVENTUALLY`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(what, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
}

/// Poll `attempt` until it yields a value, failing the test after [`EVENTUALLY`].
pub async fn eventually_some<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback address that was free a moment ago (for servers that start later).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `aibridge-test-mcp` binary, built on first use.
///
/// Cargo builds binaries only for the package under test, so the test builds the test
/// server itself (`cargo build -p aibridge-test-mcp`) and takes the executable path from
/// cargo's JSON output; this works from a clean checkout and any `CARGO_TARGET_DIR`.
pub fn test_server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let output = std::process::Command::new(cargo)
                .current_dir(repo_root())
                .args([
                    "build",
                    "-p",
                    "aibridge-test-mcp",
                    "--bin",
                    "aibridge-test-mcp",
                    "--message-format=json",
                ])
                .output()
                .expect("run cargo build for the test MCP server");
            assert!(
                output.status.success(),
                "building aibridge-test-mcp failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|m| m["reason"] == "compiler-artifact")
                .find_map(|m| m["executable"].as_str().map(PathBuf::from))
                .expect("cargo reported no executable for aibridge-test-mcp")
        })
        .clone()
}

/// A third-party server installed under the repository root, or a clear failure.
pub fn installed(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup-test-deps.sh",
        path.display()
    );
    path
}

/// The first text block of a result.
pub fn first_text(result: &mcp::ToolCallResult) -> String {
    result
        .content
        .iter()
        .find_map(|c| match c {
            mcp::ToolResultContent::Text(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// JSON arguments from a `json!` object.
pub fn args(value: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    match value {
        serde_json::Value::Object(map) => Some(map),
        _ => panic!("arguments must be an object"),
    }
}
