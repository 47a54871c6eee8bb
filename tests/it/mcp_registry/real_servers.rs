//! Third-party MCP servers: `@modelcontextprotocol/server-everything` (stdio and streamable
//! HTTP) and `mcp-server-time` (stdio), as installed by `scripts/setup-test-deps.sh`.

use aibridge::mcp::ToolResultContent;
use serde_json::json;

use super::*;

const EVERYTHING: &str = ".tools/node/node_modules/.bin/mcp-server-everything";
const TIME: &str = ".venv/bin/mcp-server-time";

async fn check_everything(registry: &ToolRegistry, server: &str) {
    let tools = names(registry);
    for tool in ["echo", "get-sum", "get-tiny-image"] {
        let name = format!("bmcp_{server}_{tool}");
        assert!(tools.contains(&name), "{name} missing from {tools:?}");
    }
    let sum = registry
        .call(
            &format!("bmcp_{server}_get-sum"),
            args(json!({"a": 2, "b": 40})),
        )
        .await;
    assert_eq!(sum.invocation_error, None);
    assert!(first_text(&sum).contains("42"), "{sum:?}");
    let echo = registry
        .call(
            &format!("bmcp_{server}_echo"),
            args(json!({"message": "hello everything"})),
        )
        .await;
    assert_eq!(first_text(&echo), "Echo: hello everything");
    let image = registry
        .call(&format!("bmcp_{server}_get-tiny-image"), None)
        .await;
    assert!(
        image.content.iter().any(|c| matches!(
            c,
            ToolResultContent::Image { mime_type, data } if mime_type == "image/png" && !data.is_empty()
        )),
        "{image:?}"
    );
}

#[tokio::test]
async fn server_everything_over_stdio() {
    let bin = installed(EVERYTHING);
    let registry = started(&config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"every\"\ncommand = \"{}\"\nargs = [\"stdio\"]\nconnect_timeout = \"30s\"\n",
        bin.display()
    )))
    .await;
    check_everything(&registry, "every").await;
    registry.shutdown().await;
}

#[tokio::test]
async fn server_everything_over_streamable_http() {
    let bin = installed(EVERYTHING);
    let addr = free_addr();
    let _child = tokio::process::Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", addr.port().to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("server-everything listens", || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let registry = started(&config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"everyhttp\"\nurl = \"http://{addr}/mcp\"\n"
    )))
    .await;
    let status = registry.servers();
    assert!(status[0].connected, "{status:?}");
    check_everything(&registry, "everyhttp").await;
    registry.shutdown().await;
}

#[tokio::test]
async fn mcp_server_time_over_stdio() {
    let bin = installed(TIME);
    let registry = started(&config(&format!(
        r#"
        [mcp]
        [[mcp.servers]]
        name = "time"
        command = "{}"
        args = ["--local-timezone", "UTC"]
        allow = ["^get_"]
        connect_timeout = "30s"
        "#,
        bin.display()
    )))
    .await;
    // The allow list keeps get_current_time and drops convert_time.
    assert_eq!(names(&registry), ["bmcp_time_get_current_time"]);
    let tool = registry.get("bmcp_time_get_current_time").unwrap();
    assert!(tool.input_schema["properties"]["timezone"].is_object());
    let now = registry
        .call(
            "bmcp_time_get_current_time",
            args(json!({"timezone": "Asia/Tokyo"})),
        )
        .await;
    assert!(!now.is_error, "{now:?}");
    let body: serde_json::Value = serde_json::from_str(&first_text(&now)).unwrap();
    assert_eq!(body["timezone"], "Asia/Tokyo");
    assert!(
        body["datetime"].as_str().unwrap().ends_with("+09:00"),
        "{body}"
    );
    let bad = registry
        .call(
            "bmcp_time_get_current_time",
            args(json!({"timezone": "Not/AZone"})),
        )
        .await;
    assert!(bad.is_error, "{bad:?}");
    registry.shutdown().await;
}
