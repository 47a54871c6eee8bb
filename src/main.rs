//! The `aibridge` command line: `serve`, `migrate`, `config check`, and the audit and MCP
//! tools.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use aibridge::config::{Config, ProcessEnv};
use aibridge::intercept::tool_loop::ToolSource;
use aibridge::mcp::{McpMetrics, ToolRegistry};
use aibridge::metrics::{Metrics, new_registry};
use aibridge::record::pipeline::PipelineMetrics;
use aibridge::record::sql::SqlRecorder;
use aibridge::record::{LogRecorder, Pipeline, PipelineConfig, RecordQueue, Recorder};
use aibridge::server::{Readiness, app};
use aibridge::{Authenticator, BridgeOptions, RequestBridge};

/// The profile of a loaded bridge shows glibc malloc/free at ~15% of its CPU (many small
/// short-lived allocations across worker threads); mimalloc handles that pattern better.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "aibridge",
    version,
    about = "An AI gateway: bridge, audit, central MCP tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// TOML config file; without one, the defaults and environment are used.
    #[arg(long, env = "AIBRIDGE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Do not run database migrations at start-up.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Create or update the audit database schema, then exit.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Query the audit database (table output, or `--json`).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: aibridge::audit::AuditCommand,
    },
    /// MCP tools.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum McpCommand {
    /// Print the tools that would be injected, with their server; fails if a server cannot
    /// be reached.
    Tools {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file and print what it resolves to (secrets masked).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `serve` runs its requests on its own serving threads; this runtime only accepts, runs
    // the MCP sessions and the recording pipeline. One worker does that, with no idle
    // worker to wake (A/B, blocking and streaming: 3-11% more requests per second than with
    // one per core). TOKIO_WORKER_THREADS still decides when set.
    if matches!(cli.command, Command::Serve { .. })
        && std::env::var_os("TOKIO_WORKER_THREADS").is_none()
    {
        builder.worker_threads(1);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, no_migrate } => serve(config.config, no_migrate).await,
            Command::Migrate { config } => migrate(config.config).await,
            Command::Audit { config, command } => {
                let database_url = Config::database_url(config.config.as_deref(), &ProcessEnv)?;
                let mut out = std::io::stdout().lock();
                Ok(aibridge::audit::run(command, &database_url, &mut out).await?)
            }
            Command::Mcp {
                command: McpCommand::Tools { config },
            } => {
                let config = load(config.config)?;
                let mut out = std::io::stdout().lock();
                Ok(aibridge::mcp::tools_report(&config.mcp, &mut out).await?)
            }
            Command::Config {
                command: ConfigCommand::Check { config },
            } => check(config.config),
        }
    })
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref(), &ProcessEnv)?)
}

fn check(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = load(path)?;
    println!("config ok");
    println!("listen: {}", config.listen);
    println!(
        "database_url: {}",
        aibridge::secret::redact_url(&config.database_url)
    );
    for p in &config.providers {
        let proxy = p
            .proxy
            .rules(&ProcessEnv)
            .proxy_for(&p.base_url)
            .unwrap_or_else(|| "none".to_owned());
        println!(
            "provider {}: kind={} base_url={} key={} proxy={proxy}",
            p.name,
            p.kind.as_str(),
            p.base_url,
            p.api_key
                .as_ref()
                .map_or("client's own".to_owned(), |k| k.hint())
        );
    }
    println!(
        "auth: {} virtual key(s), trusted headers {}",
        config.auth.keys.len(),
        if config.auth.trusted_headers {
            "on"
        } else {
            "off"
        }
    );
    println!(
        "recording: {}",
        if config.recording_enabled {
            "on"
        } else {
            "off"
        }
    );
    println!("serving threads: {}", config.threads);
    Ok(())
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<()> {
    let database_url = Config::database_url(path.as_deref(), &ProcessEnv)?;
    let sql = SqlRecorder::connect(&database_url)
        .await
        .context("cannot open the audit database")?;
    sql.migrate().await.context("migration failed")?;
    println!(
        "migrations applied to {}",
        aibridge::secret::redact_url(&database_url)
    );
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: in a log file they break every grep for `key=value`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(path: Option<PathBuf>, no_migrate: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    init_tracing(&config);

    let mut registry = new_registry();
    let metrics = Metrics::register(&mut registry);
    let tools = (!config.mcp.servers.is_empty())
        .then(|| ToolRegistry::start(&config.mcp, Some(McpMetrics::register(&mut registry))));
    let (queue, pipeline) = if config.recording_enabled {
        let (queue, pipeline) = start_recording(&config, no_migrate, &mut registry).await?;
        (queue, Some(pipeline))
    } else {
        tracing::warn!("recording is off (recording.enabled = false): nothing is audited");
        (RecordQueue::disabled(), None)
    };
    let bridge = RequestBridge::new(BridgeOptions {
        providers: config.providers.clone(),
        queue,
        metrics,
        limits: config.limits,
        tools: tools.clone().map(|t| t as Arc<dyn ToolSource>),
        max_loop_iterations: config.mcp.max_loop_iterations,
        tool_keepalive: config.mcp.keepalive_interval,
        skip_injection_models: vec!["haiku".to_owned()],
    })?;
    let ready = Readiness::default();
    let in_flight = bridge.clone();
    let router = app(
        bridge,
        Authenticator::new(config.auth.clone()),
        Arc::new(registry),
        ready.clone(),
    );
    let listener = aibridge::server::listen(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    for p in &config.providers {
        tracing::info!(provider = %p.name, base_url = %p.base_url, centralized_key = p.api_key.is_some(), "provider mounted at /{}/", p.name);
    }
    tracing::info!(%addr, "listening");
    println!("listening on http://{addr}");
    // Ready once every MCP server was tried (connected or failed), so the first requests
    // already see the injected tools; serving never waits on a server that does not answer.
    match tools.clone() {
        Some(registry) => {
            let ready = ready.clone();
            let wait = config
                .mcp
                .servers
                .iter()
                .map(|s| s.connect_timeout)
                .max()
                .unwrap_or_default()
                * 2;
            tokio::spawn(async move {
                registry.wait_ready(wait).await;
                // A no-op when SIGTERM came first: the process stays unready.
                if ready.mark_ready() {
                    tracing::info!("every MCP server tried; ready");
                } else {
                    tracing::info!("every MCP server tried after shutdown began; staying unready");
                }
            });
        }
        None => {
            ready.mark_ready();
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(aibridge::server::serve_on_threads(
        listener,
        router,
        config.threads,
        stop_rx,
    ));
    shutdown_signal().await;
    ready.begin_shutdown();
    if !config.shutdown_delay.is_zero() {
        // Pre-stop phase: /readyz answers 503 while requests are still served, so a load
        // balancer takes the process out of rotation before its listener closes.
        tracing::info!(delay = ?config.shutdown_delay, "shutting down: /readyz answers 503; still accepting for shutdown_delay");
        tokio::select! {
            () = tokio::time::sleep(config.shutdown_delay) => {}
            () = shutdown_signal() => tracing::info!("second signal: skipping the rest of shutdown_delay"),
        }
    }
    tracing::info!(grace = ?config.shutdown_grace, "shutting down: no new connections, finishing in-flight requests");
    let _ = stop_tx.send(true);
    let mut server = server;
    let finished = match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(joined) => Some(joined),
        Err(_) => {
            tracing::warn!("grace period over; cancelling the requests still running");
            in_flight.cancel_in_flight();
            // Cancelled requests end at once; their connections close after the error
            // reaches the client. A client that never reads cannot hold the exit.
            tokio::time::timeout(CANCEL_DRAIN, &mut server).await.ok()
        }
    };
    match finished {
        Some(Ok(Ok(()))) => {}
        Some(Ok(Err(e))) => tracing::error!(error = %e, "server error"),
        Some(Err(e)) => tracing::error!(error = %e, "server task failed"),
        None => {
            tracing::warn!("connections still open after cancelling; closing them");
            server.abort();
        }
    }
    if let Some(tools) = &tools {
        tools.shutdown().await;
    }
    if let Some(pipeline) = pipeline {
        let report = pipeline.shutdown().await;
        if report.left > 0 {
            tracing::error!(left = report.left, "records not written at shutdown");
        } else {
            tracing::info!("all records written");
        }
    }
    Ok(())
}

/// Opens (and migrates) the audit store and starts the recording pipeline into it.
async fn start_recording(
    config: &Config,
    no_migrate: bool,
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<(RecordQueue, Pipeline)> {
    let recorder: Arc<dyn Recorder> = if config.database_url == "log" {
        Arc::new(LogRecorder)
    } else {
        let sql = SqlRecorder::connect(&config.database_url)
            .await
            .context("cannot open the audit database")?;
        if !no_migrate {
            sql.migrate()
                .await
                .context("cannot migrate the audit database")?;
        }
        Arc::new(sql)
    };
    let spool_dir = config
        .spool_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Pipeline::start(
        recorder,
        PipelineConfig {
            queue_capacity: config.queue_capacity,
            spool_path: Some(spool_dir.join("aibridge.spool")),
            metrics: PipelineMetrics::register(registry),
            max_batch: config.record_max_batch,
            batch_linger: config.record_batch_linger,
            ..PipelineConfig::default()
        },
    ))
}

/// How long cancelled requests get to deliver their error before the process exits.
const CANCEL_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
