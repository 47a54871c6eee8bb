//! Configuration in two phases: a serde [`RawConfig`] read from TOML (unknown keys refused),
//! validated into an immutable [`Config`] with parsed addresses, durations and secrets.
//! Errors name the path of the bad value (`providers[1].kind: …`).
//!
//! Secrets are referenced by environment variable name, never required inline; every env read
//! goes through [`Env`] so tests never touch the process environment.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::provider::{ProviderConfig, ProviderKind};
use crate::secret::Secret;
use crate::upstream::{Proxy, ProxyRules};

/// Where environment variables come from.
pub trait Env {
    /// The variable's value, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// An environment of these variables, for unit tests.
#[cfg(test)]
pub(crate) fn test_env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// A value is invalid.
    #[error("{path}: {message}")]
    Invalid {
        /// Where in the config (`providers[0].base_url`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Listen address; default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Serving threads; default one per core.
    pub threads: Option<usize>,
    /// Audit database URL; default `sqlite://aibridge.db?mode=rwc`.
    pub database_url: Option<String>,
    /// Log filter (`info`, `aibridge=debug`, …).
    pub log: Option<String>,
    /// Log format: `text` (default) or `json`.
    pub log_format: Option<String>,
    /// Upstream providers; default `anthropic` and `openai` from the environment.
    pub providers: Vec<RawProvider>,
    /// How actors are resolved.
    pub auth: RawAuth,
    /// Request limits.
    pub limits: RawLimits,
    /// The recording pipeline.
    pub recording: RawRecording,
    /// MCP servers whose tools are injected.
    pub mcp: crate::mcp::RawMcpConfig,
    /// How long in-flight requests may run after SIGTERM (`30s`).
    pub shutdown_grace: Option<String>,
    /// How long to keep accepting after SIGTERM with `/readyz` answering 503, so a load
    /// balancer sees the process leave before its listener closes (`0s`).
    pub shutdown_delay: Option<String>,
}

/// One provider as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProvider {
    /// Route prefix and record name.
    pub name: String,
    /// `anthropic` or `openai`.
    pub kind: String,
    /// Upstream base URL.
    pub base_url: Option<String>,
    /// Env var holding the centralized key; absent means clients bring their own.
    pub api_key_env: Option<String>,
    /// Send `x-aibridge-actor-id` / metadata headers upstream.
    pub send_actor_headers: bool,
    /// Extra upstream attempts after a retryable failure (default 2; 0 disables).
    pub retries: Option<u32>,
    /// First retry backoff, doubled per retry with jitter (default `500ms`).
    pub retry_backoff: Option<String>,
    /// Longest wait before a retry, including a `retry-after` (default `30s`).
    pub retry_max_wait: Option<String>,
    /// The circuit breaker.
    pub breaker: Option<crate::resilience::config::RawBreaker>,
    /// Upstream timeouts.
    pub timeouts: Option<crate::resilience::config::RawTimeouts>,
    /// Write every request and response of this provider here (secrets masked).
    pub dump_dir: Option<String>,
    /// The outbound proxy of this provider's calls (`http://host:port`), or `none` to go
    /// direct; by default the proxy environment variables decide.
    pub proxy: Option<String>,
}

/// Authentication as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Trust `x-aibridge-actor-id` from the platform in front (sidecar mode).
    pub trusted_headers: bool,
    /// Virtual keys.
    pub keys: Vec<RawVirtualKey>,
}

/// One virtual key as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawVirtualKey {
    /// The actor this key belongs to.
    pub actor_id: String,
    /// Env var holding the key.
    pub key_env: Option<String>,
    /// Hex SHA-256 of the key.
    pub key_sha256: Option<String>,
    /// Actor metadata recorded with each interception.
    pub metadata: BTreeMap<String, String>,
}

/// Limits as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Largest request body accepted, in bytes (default 32 MiB).
    pub max_body_bytes: Option<u64>,
    /// Largest blocking upstream response buffered, in bytes (default 64 MiB).
    pub max_response_bytes: Option<u64>,
    /// How long a stream may wait on a client that takes nothing before it is logged as
    /// slow (default `10s`).
    pub slow_client_after: Option<String>,
}

/// Recording pipeline as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecording {
    /// Whether interceptions are recorded at all (default `true`). With `false` no database
    /// is opened and records are dropped as they are made.
    pub enabled: Option<bool>,
    /// Directory for the spool file used while the database is down.
    pub spool_dir: Option<String>,
    /// Records that may wait in memory.
    pub queue_capacity: Option<usize>,
    /// The most records written in one transaction.
    pub max_batch: Option<usize>,
    /// How long the writer waits for more records after the first of a batch (`"250ms"`).
    pub batch_linger: Option<String>,
}

/// A virtual key, validated: only its hash is kept.
#[derive(Clone)]
pub struct VirtualKey {
    /// The actor it resolves to.
    pub actor_id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Actor metadata.
    pub metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for VirtualKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualKey")
            .field("actor_id", &self.actor_id)
            .finish_non_exhaustive()
    }
}

/// Authentication, validated.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Sidecar mode.
    pub trusted_headers: bool,
    /// Virtual keys.
    pub keys: Vec<VirtualKey>,
}

impl AuthConfig {
    /// Whether any authentication is configured; without it only loopback is allowed.
    pub fn is_configured(&self) -> bool {
        self.trusted_headers || !self.keys.is_empty()
    }
}

/// Request limits, validated.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest blocking upstream response buffered.
    pub max_response_bytes: usize,
    /// How long a stream may wait on a client that takes nothing before it is logged as
    /// slow.
    pub slow_client_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            slow_client_after: Duration::from_secs(10),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Serving threads, each with its own single-threaded runtime.
    pub threads: usize,
    /// Audit database URL.
    pub database_url: String,
    /// Log filter.
    pub log: String,
    /// Log as JSON lines.
    pub log_json: bool,
    /// Upstream providers, in route order.
    pub providers: Vec<ProviderConfig>,
    /// Authentication.
    pub auth: AuthConfig,
    /// Limits.
    pub limits: Limits,
    /// Whether records are written; `false` drops them (no database, no pipeline).
    pub recording_enabled: bool,
    /// Spool directory for the recording pipeline.
    pub spool_dir: Option<PathBuf>,
    /// Recording queue capacity.
    pub queue_capacity: usize,
    /// The most records written in one transaction.
    pub record_max_batch: usize,
    /// How long the writer waits for more records after the first of a batch.
    pub record_batch_linger: Duration,
    /// MCP servers and the tool loop.
    pub mcp: crate::mcp::McpConfig,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_grace: Duration,
    /// Pre-stop phase after SIGTERM: still accepting, `/readyz` answering 503.
    pub shutdown_delay: Duration,
}

/// Upper bound of `threads`: each is an OS thread with its own runtime and connections.
const MAX_THREADS: usize = 1024;

/// Default listen address: loopback only, so single-user mode is safe.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Upper bound of `[recording] max_batch`: a batch is held in memory whole.
const MAX_RECORD_BATCH: usize = 65_536;
/// Upper bound of `[recording] batch_linger`: records wait this long in memory at most
/// before their transaction starts.
const MAX_BATCH_LINGER: Duration = Duration::from_secs(10);

/// Default audit database: a SQLite file beside the process.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://aibridge.db?mode=rwc";

impl Config {
    /// Reads and validates a config file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw = match path {
            Some(path) => read_raw(path)?,
            None => RawConfig::default(),
        };
        Config::validate(raw, env)
    }

    /// The audit database URL alone: `AIBRIDGE_DATABASE_URL`, else the file's `database_url`,
    /// else the default. `aibridge migrate` and `aibridge audit` need nothing else, so they
    /// work where the provider keys and virtual keys the file names are not set.
    pub fn database_url(path: Option<&Path>, env: &dyn Env) -> Result<String, ConfigError> {
        let from_file = match path {
            Some(path) => read_raw(path)?.database_url,
            None => None,
        };
        Ok(env
            .var("AIBRIDGE_DATABASE_URL")
            .or(from_file)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()))
    }

    /// Validates a raw config, applying env overrides (`AIBRIDGE_LISTEN`, `AIBRIDGE_THREADS`,
    /// `AIBRIDGE_LOG`, `AIBRIDGE_DATABASE_URL`).
    pub fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
        let listen_text = env
            .var("AIBRIDGE_LISTEN")
            .or(raw.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|e| invalid("listen", format!("`{listen_text}` is not an address: {e}")))?;
        let threads = match env.var("AIBRIDGE_THREADS") {
            Some(text) => Some(text.trim().parse::<usize>().map_err(|_| {
                invalid(
                    "threads",
                    format!("AIBRIDGE_THREADS=`{text}` is not a number"),
                )
            })?),
            None => raw.threads,
        };
        let threads = match threads {
            Some(n) if !(1..=MAX_THREADS).contains(&n) => {
                return Err(invalid(
                    "threads",
                    format!("{n} is not between 1 and {MAX_THREADS}"),
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        };
        let database_url = env
            .var("AIBRIDGE_DATABASE_URL")
            .or(raw.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let log = env
            .var("AIBRIDGE_LOG")
            .or(raw.log)
            .unwrap_or_else(|| "info".to_owned());
        let log_json = match raw.log_format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(invalid(
                    "log_format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };

        let providers = if raw.providers.is_empty() {
            default_providers(env)
        } else {
            validate_providers(raw.providers, env)?
        };
        let auth = validate_auth(raw.auth, env)?;
        if !listen.ip().is_loopback() && !auth.is_configured() {
            return Err(invalid(
                "listen",
                format!(
                    "{listen} is not a loopback address and no authentication is configured; \
                     add [[auth.keys]] or set auth.trusted_headers = true"
                ),
            ));
        }
        let defaults = Limits::default();
        let limits = Limits {
            max_body_bytes: usize_of(raw.limits.max_body_bytes, defaults.max_body_bytes),
            max_response_bytes: usize_of(
                raw.limits.max_response_bytes,
                defaults.max_response_bytes,
            ),
            slow_client_after: match raw.limits.slow_client_after {
                Some(text) => parse_duration(&text)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        invalid(
                            "limits.slow_client_after",
                            format!("`{text}` is not a positive duration"),
                        )
                    })?,
                None => defaults.slow_client_after,
            },
        };
        let shutdown_grace = match raw.shutdown_grace {
            Some(text) => parse_duration(&text).map_err(|m| invalid("shutdown_grace", m))?,
            None => Duration::from_secs(30),
        };
        let shutdown_delay = match raw.shutdown_delay {
            Some(text) => parse_duration(&text).map_err(|m| invalid("shutdown_delay", m))?,
            None => Duration::ZERO,
        };
        let pipeline_defaults = crate::record::pipeline::PipelineConfig::default();
        let record_max_batch = match raw.recording.max_batch {
            Some(n) if !(1..=MAX_RECORD_BATCH).contains(&n) => {
                return Err(invalid(
                    "recording.max_batch",
                    format!("{n} is not between 1 and {MAX_RECORD_BATCH}"),
                ));
            }
            Some(n) => n,
            None => pipeline_defaults.max_batch,
        };
        let record_batch_linger = match raw.recording.batch_linger {
            Some(text) => {
                let linger =
                    parse_duration(&text).map_err(|m| invalid("recording.batch_linger", m))?;
                if linger > MAX_BATCH_LINGER {
                    return Err(invalid(
                        "recording.batch_linger",
                        format!("`{text}` is longer than 10s"),
                    ));
                }
                linger
            }
            None => pipeline_defaults.batch_linger,
        };
        let mcp = crate::mcp::validate(raw.mcp, &|name| env.var(name))
            .map_err(|e| invalid(e.path, e.message))?;
        Ok(Config {
            listen,
            threads,
            database_url,
            log,
            log_json,
            providers,
            auth,
            limits,
            recording_enabled: raw.recording.enabled.unwrap_or(true),
            spool_dir: raw.recording.spool_dir.map(PathBuf::from),
            queue_capacity: raw.recording.queue_capacity.unwrap_or(65_536),
            record_max_batch,
            record_batch_linger,
            mcp,
            shutdown_grace,
            shutdown_delay,
        })
    }
}

fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_toml(&text).map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

fn parse_toml(text: &str) -> Result<RawConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn usize_of(value: Option<u64>, default: usize) -> usize {
    value
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(default)
}

fn default_providers(env: &dyn Env) -> Vec<ProviderConfig> {
    [
        (
            ProviderKind::Anthropic,
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
        ),
        (ProviderKind::OpenAi, "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    ]
    .into_iter()
    .map(|(kind, base_env, key_env)| ProviderConfig {
        name: kind.as_str().to_owned(),
        kind,
        base_url: trim_base(
            &env.var(base_env)
                .unwrap_or_else(|| kind.default_base_url().to_owned()),
        ),
        api_key: env.var(key_env).map(Secret::new),
        send_actor_headers: false,
        resilience: crate::resilience::Resilience {
            dump_dir: env.var("AIBRIDGE_DUMP_DIR").map(PathBuf::from),
            ..Default::default()
        },
        proxy: Proxy::Rules(ProxyRules::from_env(env)),
    })
    .collect()
}

fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

fn validate_providers(
    raw: Vec<RawProvider>,
    env: &dyn Env,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let mut out: Vec<ProviderConfig> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("providers[{i}].{field}");
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                at("name"),
                "must be a non-empty route segment of letters, digits, `-` or `_`",
            ));
        }
        if out.iter().any(|o| o.name == p.name) {
            return Err(invalid(at("name"), format!("`{}` is used twice", p.name)));
        }
        let kind = ProviderKind::parse(&p.kind).ok_or_else(|| {
            invalid(
                at("kind"),
                format!("`{}` is not `anthropic` or `openai`", p.kind),
            )
        })?;
        let base_url = trim_base(p.base_url.as_deref().unwrap_or(kind.default_base_url()));
        match url::Url::parse(&base_url) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                // Not echoed: the URL holds a secret.
                return Err(invalid(at("base_url"), crate::upstream::CREDENTIALS_IN_URL));
            }
            Ok(_) if base_url.starts_with("http://") || base_url.starts_with("https://") => {}
            _ => {
                return Err(invalid(
                    at("base_url"),
                    format!("`{base_url}` is not an http(s) URL"),
                ));
            }
        }
        let api_key = match p.api_key_env {
            Some(var) => Some(env.var(&var).map(Secret::new).ok_or_else(|| {
                invalid(
                    at("api_key_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
            None => None,
        };
        let resilience = crate::resilience::config::validate(
            &crate::resilience::config::RawResilience {
                retries: p.retries,
                retry_backoff: p.retry_backoff.as_deref(),
                retry_max_wait: p.retry_max_wait.as_deref(),
                breaker: p.breaker.as_ref(),
                timeouts: p.timeouts.as_ref(),
                dump_dir: p.dump_dir.as_deref(),
            },
            env.var("AIBRIDGE_DUMP_DIR"),
        )
        .map_err(|(field, message)| invalid(at(&field), message))?;
        let proxy = match p.proxy.as_deref() {
            None => Proxy::Rules(ProxyRules::from_env(env)),
            Some("none") => Proxy::Direct,
            Some(url) => Proxy::Rules(ProxyRules::all(
                validate_proxy(url).map_err(|m| invalid(at("proxy"), m))?,
            )),
        };
        out.push(ProviderConfig {
            name: p.name,
            kind,
            base_url,
            api_key,
            send_actor_headers: p.send_actor_headers,
            resilience,
            proxy,
        });
    }
    Ok(out)
}

/// A provider's `proxy` URL: `http://host[:port]`, without credentials (those are secrets,
/// which the config file never holds: give such a proxy by `HTTPS_PROXY` instead). The
/// message never echoes the value.
fn validate_proxy(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("not a proxy URL ({e}); write `http://host:port` or `none`"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the proxy URL holds credentials: give a proxy that needs them by \
                    HTTPS_PROXY / HTTP_PROXY / ALL_PROXY instead"
                .to_owned(),
        );
    }
    if url.scheme() != "http" || !url.has_host() {
        return Err(format!(
            "`{text}` is not an http://host:port URL (only http:// proxies are supported)"
        ));
    }
    Ok(text.to_owned())
}

fn validate_auth(raw: RawAuth, env: &dyn Env) -> Result<AuthConfig, ConfigError> {
    let mut keys = Vec::with_capacity(raw.keys.len());
    for (i, k) in raw.keys.into_iter().enumerate() {
        let at = |field: &str| format!("auth.keys[{i}].{field}");
        if k.actor_id.is_empty() {
            return Err(invalid(at("actor_id"), "must not be empty"));
        }
        let sha256 = match (k.key_env, k.key_sha256) {
            (Some(var), None) => {
                let key = env.var(&var).ok_or_else(|| {
                    invalid(
                        at("key_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                crate::actor::hash_key(&key)
            }
            (None, Some(hex)) => parse_sha256(&hex)
                .ok_or_else(|| invalid(at("key_sha256"), "must be 64 hex digits"))?,
            _ => {
                return Err(invalid(
                    at("key_env"),
                    "exactly one of key_env or key_sha256 is required",
                ));
            }
        };
        keys.push(VirtualKey {
            actor_id: k.actor_id,
            sha256,
            metadata: k.metadata,
        });
    }
    Ok(AuthConfig {
        trusted_headers: raw.trusted_headers,
        keys,
    })
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub use crate::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_env as env;

    #[test]
    fn defaults_listen_on_loopback_with_env_providers() {
        let cfg = Config::load(None, &env(&[("ANTHROPIC_API_KEY", "sk-ant-x")])).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(cfg.providers.len(), 2);
        assert_eq!(cfg.providers[0].base_url, "https://api.anthropic.com");
        assert!(cfg.providers[0].api_key.is_some());
        assert_eq!(cfg.providers[1].base_url, "https://api.openai.com/v1");
        assert!(cfg.providers[1].api_key.is_none());
        assert!(cfg.recording_enabled);
    }

    #[test]
    fn recording_can_be_turned_off() {
        let raw = parse_toml("[recording]\nenabled = false\n").unwrap();
        let cfg = Config::validate(raw, &env(&[])).unwrap();
        assert!(!cfg.recording_enabled);
    }

    #[test]
    fn recording_batches_can_be_tuned_within_bounds() {
        let raw = parse_toml("[recording]\nmax_batch = 100\nbatch_linger = \"50ms\"\n").unwrap();
        let cfg = Config::validate(raw, &env(&[])).unwrap();
        assert_eq!(cfg.record_max_batch, 100);
        assert_eq!(cfg.record_batch_linger, Duration::from_millis(50));

        let defaults = Config::validate(RawConfig::default(), &env(&[])).unwrap();
        let pipeline = crate::record::pipeline::PipelineConfig::default();
        assert_eq!(defaults.record_max_batch, pipeline.max_batch);
        assert_eq!(defaults.record_batch_linger, pipeline.batch_linger);

        for (text, path) in [
            ("max_batch = 0", "recording.max_batch"),
            ("max_batch = 1000000", "recording.max_batch"),
            ("batch_linger = \"11s\"", "recording.batch_linger"),
            ("batch_linger = \"soon\"", "recording.batch_linger"),
        ] {
            let raw = parse_toml(&format!("[recording]\n{text}\n")).unwrap();
            match Config::validate(raw, &env(&[])) {
                Err(ConfigError::Invalid { path: p, .. }) => assert_eq!(p, path, "{text}"),
                other => panic!("{text}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn database_url_needs_no_provider_or_virtual_key_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aibridge.toml");
        std::fs::write(
            &path,
            "database_url = \"sqlite://from-file.db\"\n\
             [[providers]]\nname = \"a\"\nkind = \"anthropic\"\napi_key_env = \"UNSET_KEY\"\n\
             [[auth.keys]]\nactor_id = \"alice\"\nkey_env = \"UNSET_VKEY\"\n",
        )
        .unwrap();
        assert!(Config::load(Some(&path), &env(&[])).is_err());
        assert_eq!(
            Config::database_url(Some(&path), &env(&[])).unwrap(),
            "sqlite://from-file.db"
        );
        assert_eq!(
            Config::database_url(Some(&path), &env(&[("AIBRIDGE_DATABASE_URL", "log")])).unwrap(),
            "log"
        );
        assert_eq!(
            Config::database_url(None, &env(&[])).unwrap(),
            DEFAULT_DATABASE_URL
        );
        std::fs::write(&path, "database_urll = \"x\"\n").unwrap();
        assert!(matches!(
            Config::database_url(Some(&path), &env(&[])),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn public_listen_without_auth_is_refused() {
        let err = Config::validate(
            RawConfig::default(),
            &env(&[("AIBRIDGE_LISTEN", "0.0.0.0:80")]),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("listen:"), "{err}");
    }

    #[test]
    fn serving_threads_default_to_the_cores_and_the_environment_overrides_the_file() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let config = Config::validate(RawConfig::default(), &env(&[])).unwrap();
        assert_eq!(config.threads, cores);
        let raw: RawConfig = toml::from_str("threads = 3").unwrap();
        assert_eq!(Config::validate(raw, &env(&[])).unwrap().threads, 3);
        let raw: RawConfig = toml::from_str("threads = 3").unwrap();
        let config = Config::validate(raw, &env(&[("AIBRIDGE_THREADS", "1")])).unwrap();
        assert_eq!(config.threads, 1);
        for bad in ["0", "1025", "two"] {
            let err = Config::validate(RawConfig::default(), &env(&[("AIBRIDGE_THREADS", bad)]))
                .unwrap_err();
            assert!(err.to_string().starts_with("threads:"), "{err}");
        }
        let raw: RawConfig = toml::from_str("threads = 0").unwrap();
        let err = Config::validate(raw, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("not between 1 and 1024"), "{err}");
    }

    #[test]
    fn errors_name_the_path() {
        let raw: RawConfig =
            toml::from_str("[[providers]]\nname = \"a\"\nkind = \"gemini\"\n").unwrap();
        let err = Config::validate(raw, &env(&[])).unwrap_err();
        assert!(err.to_string().starts_with("providers[0].kind:"), "{err}");
        assert!(parse_toml("nope = 1").unwrap_err().contains("nope"));
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_without_echoing_them() {
        for (base, accepted) in [
            ("https://user:s3cret@api.example.com", false),
            ("https://user@api.example.com", false),
            ("https://api.example.com/v1", true),
            ("ftp://api.example.com", false),
        ] {
            let raw: RawConfig = toml::from_str(&format!(
                "[[providers]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"{base}\"\n"
            ))
            .unwrap();
            match Config::validate(raw, &env(&[])) {
                Ok(_) => assert!(accepted, "{base} was accepted"),
                Err(err) => {
                    assert!(!accepted, "{base}: {err}");
                    let text = err.to_string();
                    assert!(text.starts_with("providers[0].base_url:"), "{text}");
                    assert!(!text.contains("s3cret"), "{text}");
                }
            }
        }
    }

    #[test]
    fn shutdown_delay_and_slow_client_after_parse_with_defaults() {
        let cfg = Config::load(None, &env(&[])).unwrap();
        assert_eq!(cfg.shutdown_delay, Duration::ZERO);
        assert_eq!(cfg.limits.slow_client_after, Duration::from_secs(10));
        let raw: RawConfig =
            toml::from_str("shutdown_delay = \"5s\"\n[limits]\nslow_client_after = \"1500ms\"\n")
                .unwrap();
        let cfg = Config::validate(raw, &env(&[])).unwrap();
        assert_eq!(cfg.shutdown_delay, Duration::from_secs(5));
        assert_eq!(cfg.limits.slow_client_after, Duration::from_millis(1500));
        for (text, path) in [
            ("shutdown_delay = \"soon\"\n", "shutdown_delay:"),
            (
                "[limits]\nslow_client_after = \"0s\"\n",
                "limits.slow_client_after:",
            ),
        ] {
            let raw: RawConfig = toml::from_str(text).unwrap();
            let err = Config::validate(raw, &env(&[])).unwrap_err();
            assert!(err.to_string().starts_with(path), "{err}");
        }
    }

    #[test]
    fn virtual_keys_from_env_or_hash() {
        let raw: RawConfig = toml::from_str(
            "[[auth.keys]]\nactor_id = \"alice\"\nkey_env = \"K\"\n\
             [[auth.keys]]\nactor_id = \"bob\"\nkey_sha256 = \"00\"\n",
        )
        .unwrap();
        let err = Config::validate(raw, &env(&[("K", "secret")])).unwrap_err();
        assert!(
            err.to_string().starts_with("auth.keys[1].key_sha256"),
            "{err}"
        );
    }

    #[test]
    fn provider_resilience_settings() {
        let raw: RawConfig = toml::from_str(
            "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nretries = 0\n\
             dump_dir = \"/tmp/d\"\n[providers.breaker]\nfailures = 2\nopen_for = \"5s\"\n\
             [providers.timeouts]\nfirst_byte = \"20s\"\n",
        )
        .unwrap();
        let cfg = Config::validate(raw, &env(&[])).unwrap();
        let r = &cfg.providers[0].resilience;
        assert_eq!(r.retries, 0);
        assert_eq!(r.breaker.failures, 2);
        assert_eq!(r.breaker.open_for, Duration::from_secs(5));
        assert_eq!(r.breaker.trip_on, vec![429, 503, 504, 529]);
        assert_eq!(r.timeouts.first_byte, Duration::from_secs(20));
        assert_eq!(r.timeouts.idle, Duration::from_secs(300));
        assert_eq!(r.dump_dir.as_deref(), Some(Path::new("/tmp/d")));
        let raw: RawConfig = toml::from_str(
            "[[providers]]\nname = \"a\"\nkind = \"openai\"\n[providers.timeouts]\nidle = \"0s\"\n",
        )
        .unwrap();
        let err = Config::validate(raw, &env(&[])).unwrap_err();
        assert!(
            err.to_string().starts_with("providers[0].timeouts.idle"),
            "{err}"
        );
    }

    #[test]
    fn provider_proxies_from_the_file_or_the_environment() {
        let proxy_env = env(&[
            ("HTTPS_PROXY", "http://u:pw@corp:3128"),
            ("no_proxy", "localhost"),
        ]);
        let cfg = Config::load(None, &proxy_env).unwrap();
        for p in &cfg.providers {
            let Proxy::Rules(rules) = &p.proxy else {
                panic!("{:?}", p.proxy);
            };
            assert_eq!(rules.https.as_deref(), Some("http://u:pw@corp:3128"));
            assert_eq!(rules.no.as_deref(), Some("localhost"));
        }
        let raw: RawConfig = toml::from_str(
            "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nproxy = \"http://egress:8080\"\n\
             [[providers]]\nname = \"b\"\nkind = \"openai\"\nproxy = \"none\"\n\
             [[providers]]\nname = \"c\"\nkind = \"openai\"\n",
        )
        .unwrap();
        let cfg = Config::validate(raw, &proxy_env).unwrap();
        assert_eq!(
            cfg.providers[0].proxy,
            Proxy::Rules(ProxyRules::all("http://egress:8080"))
        );
        assert_eq!(cfg.providers[1].proxy, Proxy::Direct);
        assert_eq!(
            cfg.providers[2].proxy,
            Proxy::Rules(ProxyRules::from_env(&proxy_env))
        );
        for bad in [
            "http://alice:s3cret@egress:8080",
            "socks5://egress:1080",
            "egress:8080",
            "not a url",
        ] {
            let raw: RawConfig = toml::from_str(&format!(
                "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\nproxy = \"{bad}\"\n"
            ))
            .unwrap();
            let err = Config::validate(raw, &env(&[])).unwrap_err().to_string();
            assert!(err.starts_with("providers[0].proxy: "), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
    }
}
