//! The registry against our test server over streamable HTTP (in-process) and stdio.

use aibridge::mcp::{McpMetrics, ToolRegistry, ToolResultContent, naming};
use serde_json::json;
use test_mcp::{Options, serve_http};

use super::*;

async fn http_server(options: Options) -> test_mcp::HttpServer {
    serve_http("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap()
}

fn http_config(servers: &[(&str, &str)], extra: &str) -> McpConfig {
    let mut text = String::from("[mcp]\n");
    for (name, url) in servers {
        text.push_str(&format!(
            "[[mcp.servers]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n"
        ));
    }
    config(&text)
}

const BASE_TOOLS: [&str; 8] = [
    "add", "echo", "fail", "image", "pid", "resource", "slow", "toggle",
];

#[tokio::test]
async fn http_tools_are_listed_across_pages_named_and_sorted() {
    let server = http_server(Options {
        page_size: 2,
        ..Options::default()
    })
    .await;
    let registry = started(&http_config(&[("t", &server.url())], "")).await;
    let expected: Vec<String> = BASE_TOOLS.iter().map(|t| format!("bmcp_t_{t}")).collect();
    assert_eq!(names(&registry), expected);
    let echo = registry.get("bmcp_t_echo").unwrap();
    assert_eq!(echo.server, "t");
    assert_eq!(echo.tool, "echo");
    assert_eq!(echo.server_url, server.url());
    assert_eq!(echo.description.as_deref(), Some("Returns its text."));
    assert_eq!(echo.input_schema["properties"]["text"]["type"], "string");
    assert!(registry.is_injected("bmcp_t_echo"));
    assert!(!registry.is_injected("echo"));
    assert!(registry.get("bmcp_t_nope").is_none());
    registry.shutdown().await;
    assert!(registry.tools().is_empty());
}

#[tokio::test]
async fn http_calls_convert_results() {
    let server = http_server(Options::default()).await;
    let registry = started(&http_config(&[("t", &server.url())], "")).await;

    let echo = registry
        .call("bmcp_t_echo", args(json!({"text": "hi there"})))
        .await;
    assert_eq!(
        echo.content,
        vec![ToolResultContent::Text("hi there".into())]
    );
    assert!(!echo.is_error);
    assert_eq!(echo.invocation_error, None);
    assert_eq!(echo.server_url, server.url());

    let add = registry
        .call("bmcp_t_add", args(json!({"a": 40, "b": 2})))
        .await;
    assert_eq!(first_text(&add), "42");

    let fail = registry
        .call("bmcp_t_fail", args(json!({"message": "nope"})))
        .await;
    assert!(fail.is_error);
    assert_eq!(fail.invocation_error, None);
    assert_eq!(first_text(&fail), "nope");

    let image = registry.call("bmcp_t_image", None).await;
    assert_eq!(
        image.content,
        vec![ToolResultContent::Image {
            data: test_mcp::TINY_PNG.to_owned(),
            mime_type: "image/png".to_owned()
        }]
    );

    let resource = registry.call("bmcp_t_resource", None).await;
    assert_eq!(
        resource.content,
        vec![
            ToolResultContent::Resource {
                uri: "test://resource/text".into(),
                mime_type: Some("text/plain".into()),
                text: Some("hello from a resource".into()),
                blob: None,
            },
            ToolResultContent::Resource {
                uri: "test://resource/blob".into(),
                mime_type: Some("application/octet-stream".into()),
                text: None,
                blob: Some("AAEC".into()),
            },
        ]
    );

    // A JSON-RPC error from the server (bad arguments) is an invocation error.
    let bad = registry.call("bmcp_t_add", args(json!({"a": "x"}))).await;
    let message = bad.invocation_error.unwrap();
    assert!(message.contains("`a` must be an integer"), "{message}");

    let unknown = registry.call("bmcp_t_missing", None).await;
    assert_eq!(
        unknown.invocation_error.as_deref(),
        Some("unknown tool `bmcp_t_missing`")
    );
    registry.shutdown().await;
}

#[tokio::test]
async fn a_slow_call_times_out_as_an_invocation_error() {
    let server = http_server(Options::default()).await;
    let registry = started(&http_config(
        &[("t", &server.url())],
        "call_timeout = \"300ms\"",
    ))
    .await;
    let quick = registry.call("bmcp_t_slow", args(json!({"ms": 1}))).await;
    assert_eq!(first_text(&quick), "slept 1ms");
    let slow = registry
        .call("bmcp_t_slow", args(json!({"ms": 20_000})))
        .await;
    assert!(slow.is_error);
    let message = slow.invocation_error.unwrap();
    assert!(message.contains("timed out after 300ms"), "{message}");
    // The session survives a timeout.
    let after = registry
        .call("bmcp_t_echo", args(json!({"text": "still here"})))
        .await;
    assert_eq!(first_text(&after), "still here");
    registry.shutdown().await;
}

#[tokio::test]
async fn allow_and_deny_match_anywhere_unless_anchored_and_deny_wins() {
    let server = http_server(Options::default()).await;
    let url = server.url();
    let registry = started(&config(&format!(
        r#"
        [mcp]
        [[mcp.servers]]
        name = "partial"      # "es" occurs inside "resource" only
        url = "{url}"
        allow = ["es"]
        [[mcp.servers]]
        name = "anchored"     # "^ech$" is not the whole of "echo"
        url = "{url}"
        allow = ["^ech$", "^add$"]
        [[mcp.servers]]
        name = "denied"       # deny wins over allow
        url = "{url}"
        allow = ["^(echo|fail|slow)$"]
        deny = ["^fail$", "lo"]
        [[mcp.servers]]
        name = "all"          # deny without allow
        url = "{url}"
        deny = ["i"]
        "#
    )))
    .await;
    assert_eq!(
        names(&registry),
        [
            "bmcp_all_add",
            "bmcp_all_echo",
            "bmcp_all_resource",
            "bmcp_all_slow",
            "bmcp_all_toggle",
            "bmcp_anchored_add",
            "bmcp_denied_echo",
            "bmcp_partial_resource",
        ]
    );
    registry.shutdown().await;
}

#[tokio::test]
async fn odd_names_are_sanitized_and_collisions_disambiguated() {
    let long = "x".repeat(80);
    let server = http_server(Options {
        extra_tools: vec!["a.b".into(), "a_b".into(), long.clone(), "ok-tool".into()],
        ..Options::default()
    })
    .await;
    let registry = started(&http_config(&[("t", &server.url())], "")).await;
    let tools = registry.tools();
    for tool in tools.iter() {
        assert!(naming::is_valid(&tool.name), "{}", tool.name);
    }
    assert!(registry.get("bmcp_t_ok-tool").is_some());
    let dotted: Vec<_> = tools
        .iter()
        .filter(|t| t.tool == "a.b" || t.tool == "a_b")
        .collect();
    assert_eq!(dotted.len(), 2);
    assert_ne!(dotted[0].name, dotted[1].name);
    for tool in &dotted {
        assert!(tool.name.starts_with("bmcp_t_a_b_"), "{}", tool.name);
        assert_eq!(tool.name.len(), "bmcp_t_a_b_".len() + 8);
    }
    let long_tool = tools.iter().find(|t| t.tool == long).unwrap();
    assert_eq!(long_tool.name.len(), 64);
    // The call goes to the raw name behind the injected one.
    let called = registry
        .call(&dotted[0].name, args(json!({"text": "dot"})))
        .await;
    assert_eq!(first_text(&called), "dot");
    registry.shutdown().await;
}

#[tokio::test]
async fn order_is_stable_whatever_the_config_order() {
    let server = http_server(Options::default()).await;
    let url = server.url();
    let one = started(&http_config(&[("b", &url), ("a", &url)], "")).await;
    let two = started(&http_config(&[("a", &url), ("b", &url)], "")).await;
    assert_eq!(one.tools(), two.tools());
    let list = names(&one);
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted);
    assert_eq!(list.len(), 2 * BASE_TOOLS.len());
    one.shutdown().await;
    two.shutdown().await;
}

#[tokio::test]
async fn list_changed_refreshes_the_tools() {
    let server = http_server(Options::default()).await;
    let registry = started(&http_config(&[("t", &server.url())], "")).await;
    assert!(registry.get("bmcp_t_extra").is_none());
    let toggled = registry.call("bmcp_t_toggle", None).await;
    assert_eq!(first_text(&toggled), "extra tool enabled");
    eventually("the extra tool appears", || async {
        registry.get("bmcp_t_extra").is_some()
    })
    .await;
    let extra = registry
        .call("bmcp_t_extra", args(json!({"text": "new"})))
        .await;
    assert_eq!(first_text(&extra), "new");
    registry.call("bmcp_t_toggle", None).await;
    eventually("the extra tool disappears", || async {
        registry.get("bmcp_t_extra").is_none()
    })
    .await;
    registry.shutdown().await;
}

#[tokio::test]
async fn stdio_server_works_and_shutdown_ends_the_child() {
    let binary = test_server_binary();
    let registry = started(&config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"s\"\ncommand = \"{}\"\nargs = [\"--page-size\", \"1\"]\n",
        binary.display()
    )))
    .await;
    let expected: Vec<String> = BASE_TOOLS.iter().map(|t| format!("bmcp_s_{t}")).collect();
    assert_eq!(names(&registry), expected);
    let tool = registry.get("bmcp_s_echo").unwrap();
    assert_eq!(tool.server_url, format!("stdio:{}", binary.display()));
    let add = registry
        .call("bmcp_s_add", args(json!({"a": 1, "b": 2})))
        .await;
    assert_eq!(first_text(&add), "3");
    let pid: u32 = first_text(&registry.call("bmcp_s_pid", None).await)
        .parse()
        .unwrap();
    registry.shutdown().await;
    eventually("the child exits after shutdown", || async {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
    })
    .await;
}

#[tokio::test]
async fn metrics_count_calls_by_outcome() {
    let server = http_server(Options::default()).await;
    let mut prometheus = aibridge::metrics::new_registry();
    let metrics = McpMetrics::register(&mut prometheus);
    let config = http_config(&[("t", &server.url())], "call_timeout = \"200ms\"");
    let registry = ToolRegistry::start(&config, Some(metrics));
    registry.wait_ready(EVENTUALLY).await;
    registry
        .call("bmcp_t_echo", args(json!({"text": "x"})))
        .await;
    registry.call("bmcp_t_fail", None).await;
    registry
        .call("bmcp_t_slow", args(json!({"ms": 10_000})))
        .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &prometheus).unwrap();
    for line in [
        r#"aibridge_injected_tool_invocations_total{server="t",tool="echo",outcome="ok"} 1"#,
        r#"aibridge_injected_tool_invocations_total{server="t",tool="fail",outcome="tool_error"} 1"#,
        r#"aibridge_injected_tool_invocations_total{server="t",tool="slow",outcome="timeout"} 1"#,
        r#"aibridge_mcp_call_duration_seconds_count{server="t"} 3"#,
        "aibridge_mcp_servers_connected 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    registry.shutdown().await;
}
