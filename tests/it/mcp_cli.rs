//! `aibridge mcp tools`: the built binary lists the tools that would be injected and exits
//! non-zero when a server cannot be reached.

use std::process::{Command, Output};

async fn mcp_tools(config: String) -> Output {
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aibridge.toml");
        std::fs::write(&path, config).unwrap();
        Command::new(env!("CARGO_BIN_EXE_aibridge"))
            .args(["mcp", "tools", "--config"])
            .arg(&path)
            .env_remove("AIBRIDGE_CONFIG")
            .env_remove("AIBRIDGE_LOG")
            .current_dir(dir.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_the_tools_of_a_live_server_and_exits_zero() {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let config = format!(
        "[[mcp.servers]]\nname = \"t\"\nurl = \"{}\"\ndeny = [\"^pid$\"]\n",
        server.url()
    );
    let out = mcp_tools(config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let echo = stdout
        .lines()
        .find(|l| l.starts_with("bmcp_t_echo "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let columns: Vec<&str> = echo.split_whitespace().collect();
    assert_eq!(columns, vec!["bmcp_t_echo", "t", "Returns", "its", "text."]);
    assert!(
        !stdout.contains("bmcp_t_pid"),
        "denied tool listed: {stdout}"
    );
    assert!(
        stdout.contains(&format!("server t ({}): ", server.url())),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_makes_it_fail() {
    // A port that was just free: nothing answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let config =
        format!("[[mcp.servers]]\nname = \"down\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n");
    let out = mcp_tools(config).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status.code(), Some(0), "{stdout}");
    assert!(out.status.code().is_some(), "killed by a signal: {out:?}");
    assert!(
        stdout.contains(&format!("server down ({url}): UNREACHABLE: ")),
        "{stdout}"
    );
    assert!(!stdout.contains("bmcp_"), "{stdout}");
}
