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

/// How many connections the kernel queues before the mock accepts them: as many as the
/// bridge's listener takes, so a burst of clients that the bridge holds is not refused by
/// its baseline (with std's 128, a quarter of a 1,000-connection burst waited a second for
/// the SYN retransmit). The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` (a socket address, or a name that resolves to one).
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match listen(&args.listen).await {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::listen;

    /// Nothing accepts here: every connection the queue has room for connects at once, one
    /// past it waits a second for the SYN retransmit (with std's 128, the 130th).
    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connections() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(128);
        let burst = cap.min(256);
        let mut held = Vec::with_capacity(burst);
        for n in 0..burst {
            let conn = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .unwrap_or_else(|_| panic!("connection {} waited: the listen queue is full", n + 1))
            .unwrap();
            held.push(conn);
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error() {
        assert!(listen("no-such-host.invalid:0").await.is_err());
    }
}
