//! `aibridge-mock-upstream`: the mock model provider as a standalone server (smart mode only).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mock_upstream::{MockOptions, MockUpstream};

/// A fake Anthropic / OpenAI provider for demos and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "aibridge-mock-upstream", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Number of deltas a streamed text answer is split into.
    #[arg(long, default_value_t = 20)]
    deltas: usize,
    /// Delay before each streamed delta, in milliseconds (slow mode for open-stream benchmarks).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Print one line per request to stderr.
    #[arg(long)]
    log: bool,
    /// Refuse (401) every request that does not carry this key in `x-api-key` or
    /// `Authorization: Bearer` (proves which key a gateway sent upstream).
    #[arg(long, value_name = "KEY")]
    require_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match mock_upstream::listen(&args.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "aibridge-mock-upstream: cannot listen on {}: {err}",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let options = MockOptions {
        text_deltas: args.deltas.max(1),
        delta_delay: Duration::from_millis(args.delay_ms),
        // A benchmark baseline must not grow with every request.
        record_requests: false,
        log: args.log,
        required_key: args.require_key,
    };
    let mock = MockUpstream::serve(listener, options);
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {}", mock.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    shutdown_signal().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
