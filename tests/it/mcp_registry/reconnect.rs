//! Servers that are down at start, die, or restart.

use serde_json::json;
use test_mcp::{Options, serve_http};

use super::*;

#[tokio::test]
async fn a_server_down_at_start_joins_when_it_comes_up() {
    let up = serve_http("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let addr = free_addr();
    let registry = started(&config(&format!(
        r#"
        [mcp]
        [[mcp.servers]]
        name = "up"
        url = "{}"
        [[mcp.servers]]
        name = "late"
        url = "http://{addr}/mcp"
        connect_timeout = "2s"
        "#,
        up.url()
    )))
    .await;
    // Start-up did not wait for the dead server, and the live one is usable.
    assert!(registry.get("bmcp_up_echo").is_some());
    assert!(registry.get("bmcp_late_echo").is_none());
    let late = registry
        .servers()
        .into_iter()
        .find(|s| s.name == "late")
        .unwrap();
    assert!(!late.connected);
    assert!(late.last_error.is_some());
    let refused = registry.call("bmcp_late_echo", None).await;
    assert!(refused.invocation_error.is_some());

    let _late_server = serve_http(addr, Options::default()).await.unwrap();
    eventually("the late server's tools appear", || async {
        registry.get("bmcp_late_echo").is_some()
    })
    .await;
    let echo = registry
        .call("bmcp_late_echo", args(json!({"text": "finally"})))
        .await;
    assert_eq!(first_text(&echo), "finally");
    registry.shutdown().await;
}

#[tokio::test]
async fn a_killed_stdio_child_is_restarted() {
    let binary = test_server_binary();
    let registry = started(&config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"s\"\ncommand = \"{}\"\n",
        binary.display()
    )))
    .await;
    let first: u32 = first_text(&registry.call("bmcp_s_pid", None).await)
        .parse()
        .unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let second = eventually_some("a new child answers", || {
        let registry = registry.clone();
        async move {
            let result = registry.call("bmcp_s_pid", None).await;
            result
                .invocation_error
                .is_none()
                .then(|| first_text(&result))
        }
    })
    .await;
    let second: u32 = second.parse().unwrap();
    assert_ne!(first, second);
    registry.shutdown().await;
}

#[tokio::test]
async fn a_restarted_http_server_gets_a_new_session() {
    let server = serve_http("127.0.0.1:0".parse().unwrap(), Options::default())
        .await
        .unwrap();
    let addr = server.addr();
    let registry = started(&config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"h\"\nurl = \"{}\"\nconnect_timeout = \"2s\"\ncall_timeout = \"5s\"\n",
        server.url()
    )))
    .await;
    let before = registry
        .call("bmcp_h_echo", args(json!({"text": "one"})))
        .await;
    assert_eq!(first_text(&before), "one");
    server.stop();
    drop(server);
    // Give the old listener time to close before rebinding the same port.
    let _restarted = eventually_some("the port can be bound again", || async move {
        serve_http(addr, Options::default()).await.ok()
    })
    .await;
    eventually("calls succeed on the restarted server", || async {
        let result = registry
            .call("bmcp_h_echo", args(json!({"text": "two"})))
            .await;
        first_text(&result) == "two"
    })
    .await;
    registry.shutdown().await;
}
