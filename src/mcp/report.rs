//! `aibridge mcp tools`: which tools would be injected, and which servers are unreachable.

use std::io::Write;
use std::time::Duration;

use super::config::McpConfig;
use super::registry::ToolRegistry;

/// Extra time on top of the slowest server's timeouts.
const REPORT_SLACK: Duration = Duration::from_secs(5);

/// Why the report failed.
#[derive(Debug, thiserror::Error)]
pub enum McpReportError {
    /// At least one server could not be reached; the report names them.
    #[error("MCP server(s) unreachable: {}", .0.join(", "))]
    Unreachable(Vec<String>),
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

/// Connect to every server once, print the tools that would be injected (name, server,
/// description) and the servers that failed. `Err` if any server is unreachable.
pub async fn tools_report(config: &McpConfig, out: &mut dyn Write) -> Result<(), McpReportError> {
    let registry = ToolRegistry::start(config, None);
    // Connecting and listing tools each get `connect_timeout`.
    let wait = config
        .servers
        .iter()
        .map(|s| s.connect_timeout * 2)
        .max()
        .unwrap_or_default()
        + REPORT_SLACK;
    registry.wait_ready(wait).await;
    let tools = registry.tools();
    let servers = registry.servers();
    registry.shutdown().await;

    let name_width = tools.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let server_width = tools
        .iter()
        .map(|t| t.server.len())
        .max()
        .unwrap_or(6)
        .max(6);
    writeln!(
        out,
        "{:name_width$}  {:server_width$}  DESCRIPTION",
        "TOOL", "SERVER"
    )?;
    for tool in tools.iter() {
        let description = tool
            .description
            .as_deref()
            .and_then(|d| d.lines().next())
            .unwrap_or("");
        let description: String = description.chars().take(80).collect();
        writeln!(
            out,
            "{:name_width$}  {:server_width$}  {description}",
            tool.name, tool.server
        )?;
    }
    writeln!(out)?;
    if servers.is_empty() {
        writeln!(out, "no MCP servers configured")?;
    }
    let mut unreachable = Vec::new();
    for server in &servers {
        if server.connected {
            writeln!(
                out,
                "server {} ({}): {} tool(s)",
                server.name, server.location, server.tools
            )?;
        } else {
            let error = server.last_error.as_deref().unwrap_or("no answer in time");
            writeln!(
                out,
                "server {} ({}): UNREACHABLE: {error}",
                server.name, server.location
            )?;
            unreachable.push(server.name.clone());
        }
    }
    if unreachable.is_empty() {
        Ok(())
    } else {
        Err(McpReportError::Unreachable(unreachable))
    }
}
