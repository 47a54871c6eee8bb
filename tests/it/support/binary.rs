//! The built `aibridge` binary, served from a config file on 127.0.0.1:0, with its logs in a
//! file so tests can read everything it printed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Env vars the tests' own environment may hold; each test sets what it needs.
const CLEARED: [&str; 17] = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AIBRIDGE_LISTEN",
    "AIBRIDGE_LOG",
    "AIBRIDGE_DATABASE_URL",
    "AIBRIDGE_DUMP_DIR",
    "AIBRIDGE_CONFIG",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `aibridge ARGS` run in `dir` with only these of the variables the binary reads.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aibridge"));
    cmd.args(args).current_dir(dir).stdin(Stdio::null());
    for var in CLEARED {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running `aibridge serve`.
pub struct Served {
    /// The child process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where stderr (the logs) goes.
    pub log: PathBuf,
}

impl Served {
    /// Writes `config` to `dir/aibridge.toml` and starts `aibridge serve` on it with these
    /// extra environment variables; returns once it listens.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Served {
        let config_path = dir.join("aibridge.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join("aibridge.log");
        let config_arg = config_path.to_string_lossy();
        let mut cmd = command(dir, &["serve", "--config", &config_arg], env);
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                let logs = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("aibridge did not start: {line:?}\n{logs}")
            })
            .to_owned();
        Served { child, url, log }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`) and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "aibridge did not exit within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the process logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
