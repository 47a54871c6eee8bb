//! The `[mcp]` configuration table: raw serde form, validation, and the checked form.
//!
//! Validation compiles the allow/deny regexes, parses durations, checks names and URLs,
//! and expands `${VAR}` references in header and child-environment values through the
//! `env` function it is given (tests pass a closure; nothing here calls `set_var`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::secret::{Secret, expand_env};
use crate::duration::parse_duration;

/// Default for `mcp.max_loop_iterations`.
pub const DEFAULT_MAX_LOOP_ITERATIONS: u32 = 10;
/// Default for `call_timeout`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `mcp.keepalive_interval`.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// The `[mcp]` table as written in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpConfig {
    /// Cap on model ↔ tool round trips in one interception.
    #[serde(default)]
    pub max_loop_iterations: Option<u32>,
    /// How often a streaming client gets a keep-alive event while the tool loop works
    /// (tools running, the next upstream round pending), e.g. `"10s"`.
    #[serde(default)]
    pub keepalive_interval: Option<String>,
    /// The `[[mcp.servers]]` entries.
    #[serde(default)]
    pub servers: Vec<RawMcpServer>,
}

/// One `[[mcp.servers]]` entry as written.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpServer {
    /// Short name, used in tool names: `bmcp_<name>_<tool>`.
    pub name: String,
    /// Streamable HTTP endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP headers sent on every request; values may hold `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Program to spawn for a stdio server.
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment of the child; values may hold `${VAR}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Regexes on raw tool names; empty means all.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Regexes on raw tool names; a match removes the tool even if allowed.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Per-call timeout, e.g. `"60s"`, `"500ms"`.
    #[serde(default)]
    pub call_timeout: Option<String>,
    /// Timeout for connecting and the MCP handshake, e.g. `"10s"`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
}

impl fmt::Debug for RawMcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header and env values may be literal secrets; only their names are shown.
        f.debug_struct("RawMcpServer")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// The validated `[mcp]` table.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Cap on model ↔ tool round trips in one interception.
    pub max_loop_iterations: u32,
    /// How often a streaming client gets a keep-alive event while the tool loop works.
    pub keepalive_interval: Duration,
    /// The servers, in file order.
    pub servers: Vec<McpServerConfig>,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            max_loop_iterations: DEFAULT_MAX_LOOP_ITERATIONS,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            servers: Vec::new(),
        }
    }
}

/// How to reach one MCP server.
#[derive(Debug, Clone)]
pub enum McpTransport {
    /// Streamable HTTP.
    Http {
        /// The endpoint.
        url: url::Url,
        /// Header name → value (secret, already expanded).
        headers: Vec<(String, Secret)>,
    },
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// Program to spawn.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (values secret, already expanded).
        env: Vec<(String, Secret)>,
    },
}

/// One validated server.
#[derive(Debug, Clone)]
pub struct McpServerConfig {
    /// Short name (`^[a-zA-Z0-9_-]+$`, unique).
    pub name: String,
    /// How to reach it.
    pub transport: McpTransport,
    /// Which raw tool names are offered to models.
    pub filter: ToolFilter,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// Connect + handshake timeout.
    pub connect_timeout: Duration,
}

impl McpServerConfig {
    /// Where the server lives, for records and reports: the URL, or `stdio:<command>`.
    pub fn location(&self) -> String {
        match &self.transport {
            McpTransport::Http { url, .. } => url.to_string(),
            McpTransport::Stdio { command, .. } => format!("stdio:{command}"),
        }
    }
}

/// Allow/deny regexes on raw tool names.
///
/// A pattern matches if it matches *anywhere* in the name (regex search); anchor it with
/// `^…$` to require the whole name. An empty allow list allows every tool; deny wins.
#[derive(Debug, Clone, Default)]
pub struct ToolFilter {
    allow: Vec<Regex>,
    deny: Vec<Regex>,
}

impl ToolFilter {
    /// Whether a tool with this raw name is offered.
    pub fn permits(&self, tool: &str) -> bool {
        let allowed = self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(tool));
        allowed && !self.deny.iter().any(|r| r.is_match(tool))
    }
}

/// A configuration error; the message starts with the path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct McpConfigError {
    /// Where, e.g. `mcp.servers[1].allow[0]`.
    pub path: String,
    /// What is wrong (never a secret value).
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> McpConfigError {
    McpConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Validate the raw table. `env` resolves `${VAR}` references.
pub fn validate(
    raw: RawMcpConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<McpConfig, McpConfigError> {
    let max_loop_iterations = raw
        .max_loop_iterations
        .unwrap_or(DEFAULT_MAX_LOOP_ITERATIONS);
    if max_loop_iterations == 0 {
        return Err(err("mcp.max_loop_iterations", "must be at least 1"));
    }
    let keepalive_interval = timeout(
        "mcp",
        "keepalive_interval",
        raw.keepalive_interval,
        DEFAULT_KEEPALIVE_INTERVAL,
    )?;
    let mut servers: Vec<McpServerConfig> = Vec::with_capacity(raw.servers.len());
    for (i, server) in raw.servers.into_iter().enumerate() {
        let path = format!("mcp.servers[{i}]");
        let server = validate_server(&path, server, env)?;
        if servers.iter().any(|s| s.name == server.name) {
            return Err(err(
                format!("{path}.name"),
                format!("duplicate server name `{}`", server.name),
            ));
        }
        servers.push(server);
    }
    Ok(McpConfig {
        max_loop_iterations,
        keepalive_interval,
        servers,
    })
}

fn validate_server(
    path: &str,
    raw: RawMcpServer,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<McpServerConfig, McpConfigError> {
    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 32
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(err(
            format!("{path}.name"),
            format!(
                "`{}` must be 1 to 32 characters of a-z, A-Z, 0-9, `_` or `-`",
                raw.name
            ),
        ));
    }
    let transport = match (raw.url, raw.command) {
        (Some(_), Some(_)) => {
            return Err(err(path, "set either `url` or `command`, not both"));
        }
        (None, None) => return Err(err(path, "set `url` (HTTP) or `command` (stdio)")),
        (Some(url), None) => {
            if !raw.args.is_empty() || !raw.env.is_empty() {
                return Err(err(
                    path,
                    "`args` and `env` apply only to `command` servers",
                ));
            }
            let url = url::Url::parse(&url)
                .map_err(|e| err(format!("{path}.url"), format!("invalid URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(err(
                    format!("{path}.url"),
                    "the scheme must be http or https",
                ));
            }
            let mut headers = Vec::with_capacity(raw.headers.len());
            for (name, value) in raw.headers {
                let at = format!("{path}.headers.{name}");
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(err(at, "invalid header name"));
                }
                let value = expand_env(&value, env).map_err(|m| err(&at, m))?;
                if http::HeaderValue::from_str(value.expose()).is_err() {
                    return Err(err(at, "the value is not a valid header value"));
                }
                headers.push((name, value));
            }
            McpTransport::Http { url, headers }
        }
        (None, Some(command)) => {
            if !raw.headers.is_empty() {
                return Err(err(path, "`headers` apply only to `url` servers"));
            }
            if command.trim().is_empty() {
                return Err(err(format!("{path}.command"), "must not be empty"));
            }
            let mut child_env = Vec::with_capacity(raw.env.len());
            for (name, value) in raw.env {
                let value =
                    expand_env(&value, env).map_err(|m| err(format!("{path}.env.{name}"), m))?;
                child_env.push((name, value));
            }
            McpTransport::Stdio {
                command,
                args: raw.args,
                env: child_env,
            }
        }
    };
    let allow = compile_all(path, "allow", &raw.allow)?;
    let deny = compile_all(path, "deny", &raw.deny)?;
    let call_timeout = timeout(path, "call_timeout", raw.call_timeout, DEFAULT_CALL_TIMEOUT)?;
    let connect_timeout = timeout(
        path,
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )?;
    Ok(McpServerConfig {
        name: raw.name,
        transport,
        filter: ToolFilter { allow, deny },
        call_timeout,
        connect_timeout,
    })
}

fn compile_all(path: &str, key: &str, patterns: &[String]) -> Result<Vec<Regex>, McpConfigError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Regex::new(p).map_err(|e| {
                let reason = e.to_string().lines().last().unwrap_or_default().to_owned();
                err(
                    format!("{path}.{key}[{i}]"),
                    format!("invalid regex `{p}`: {}", reason.trim()),
                )
            })
        })
        .collect()
}

fn timeout(
    path: &str,
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, McpConfigError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let at = format!("{path}.{key}");
    let parsed = parse_duration(&text).map_err(|m| err(&at, m))?;
    if parsed.is_zero() {
        return Err(err(at, "must be greater than zero"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], deny: &[&str]) -> ToolFilter {
        let compile = |p: &[&str]| p.iter().map(|p| Regex::new(p).unwrap()).collect();
        ToolFilter {
            allow: compile(allow),
            deny: compile(deny),
        }
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored() {
        let partial = filter(&["get"], &[]);
        assert!(partial.permits("get_time") && partial.permits("forget"));
        let anchored = filter(&["^get$"], &[]);
        assert!(anchored.permits("get"));
        assert!(!anchored.permits("get_time") && !anchored.permits("forget"));
    }

    #[test]
    fn deny_wins_and_empty_allow_allows_all() {
        let f = filter(&["^get_"], &["secret"]);
        assert!(f.permits("get_time"));
        assert!(!f.permits("get_secret"));
        assert!(!f.permits("list"));
        assert!(filter(&[], &[]).permits("anything"));
        assert!(!filter(&[], &["^x$"]).permits("x"));
    }
}
