//! The injected-tool loop on Anthropic Messages, against the in-process test MCP server over
//! streamable HTTP: the client sees one coherent message, the upstream a valid conversation.

use std::sync::Arc;
use std::time::Duration;

use aibridge::intercept::tool_loop::ToolSource;
use aibridge::mcp::{RawMcpConfig, RawMcpServer, ToolRegistry, validate};
use serde_json::{Value, json};

use crate::records_of_kind;
use crate::support::{Setup, TestBridge, interception_id};

const MESSAGES: &str = "/anthropic/v1/messages";

struct Fixture {
    bridge: TestBridge,
    mcp_url: String,
    _server: test_mcp::HttpServer,
}

async fn start(max_loop_iterations: u32) -> Fixture {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let mcp_url = server.url();
    let raw = RawMcpConfig {
        max_loop_iterations: Some(max_loop_iterations),
        keepalive_interval: None,
        servers: vec![RawMcpServer {
            name: "test".into(),
            url: Some(mcp_url.clone()),
            deny: vec!["^pid$".into(), "^toggle$".into()],
            call_timeout: Some("500ms".into()),
            ..Default::default()
        }],
    };
    let config = validate(raw, &|_| None).unwrap();
    let registry = ToolRegistry::start(&config, None);
    registry.wait_ready(Duration::from_secs(10)).await;
    assert!(
        !registry.tools().is_empty(),
        "the test MCP server offered no tools"
    );
    let bridge = TestBridge::start_with(Setup {
        tools: Some(registry as Arc<dyn ToolSource>),
        max_loop_iterations,
        ..Default::default()
    })
    .await;
    Fixture {
        bridge,
        mcp_url,
        _server: server,
    }
}

fn request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test-1",
        "max_tokens": 256,
        "stream": stream,
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": prompt}]
    })
}

/// The message a client would accumulate from a stream, checking its shape on the way:
/// one `message_start`, consecutive block indices, one `message_delta`, one `message_stop`.
fn accumulate(stream: &str) -> Value {
    let mut message = Value::Null;
    let mut blocks: Vec<Value> = Vec::new();
    let mut json_parts: Vec<String> = Vec::new();
    let (mut starts, mut deltas, mut stops) = (0, 0, 0);
    for event in stream.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let v: Value = serde_json::from_str(data).unwrap();
        match v["type"].as_str().unwrap() {
            "message_start" => {
                starts += 1;
                message = v["message"].clone();
            }
            "content_block_start" => {
                assert_eq!(
                    v["index"].as_u64().unwrap() as usize,
                    blocks.len(),
                    "indices must be consecutive: {stream}"
                );
                blocks.push(v["content_block"].clone());
                json_parts.push(String::new());
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap() as usize;
                assert!(i < blocks.len(), "delta for an unknown block: {stream}");
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => {
                        let t = blocks[i]["text"].as_str().unwrap_or("").to_owned()
                            + d["text"].as_str().unwrap();
                        blocks[i]["text"] = Value::String(t);
                    }
                    "input_json_delta" => {
                        json_parts[i].push_str(d["partial_json"].as_str().unwrap())
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap() as usize;
                if !json_parts[i].is_empty() {
                    blocks[i]["input"] = serde_json::from_str(&json_parts[i]).unwrap();
                }
            }
            "message_delta" => {
                deltas += 1;
                message["stop_reason"] = v["delta"]["stop_reason"].clone();
                for (k, n) in v["usage"].as_object().unwrap() {
                    message["usage"][k] = n.clone();
                }
            }
            "message_stop" => stops += 1,
            "ping" => {}
            other => panic!("unexpected event {other}: {stream}"),
        }
    }
    assert_eq!((starts, deltas, stops), (1, 1, 1), "{stream}");
    message["content"] = Value::Array(blocks);
    message
}

async fn exchange(
    f: &Fixture,
    prompt: &str,
    stream: bool,
) -> (Value, Vec<aibridge::record::Record>) {
    let resp = f
        .bridge
        .post(MESSAGES, &[], request(prompt, stream).to_string())
        .await;
    assert_eq!(resp.status(), 200);
    let id = interception_id(&resp);
    let text = resp.text().await.unwrap();
    let message = if stream {
        accumulate(&text)
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (message, f.bridge.records_of(id).await)
}

/// The tool usage rows of an interception: (tool, injected, input, invocation error, server).
type ToolRow = (String, bool, Value, Option<String>, Option<String>);

fn tool_rows(records: &[aibridge::record::Record]) -> Vec<ToolRow> {
    records_of_kind!(records, ToolUsage)
        .into_iter()
        .map(|t| {
            (
                t.tool,
                t.injected,
                t.input,
                t.invocation_error,
                t.server_url,
            )
        })
        .collect()
}

fn row(
    tool: &str,
    injected: bool,
    input: Value,
    error: Option<&str>,
    server: Option<&str>,
) -> ToolRow {
    (
        tool.to_owned(),
        injected,
        input,
        error.map(str::to_owned),
        server.map(str::to_owned),
    )
}

fn texts(message: &Value) -> Vec<String> {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str().map(str::to_owned))
        .collect()
}

fn tool_names(message: &Value) -> Vec<String> {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn one_injected_call_then_text() {
    let f = start(10).await;
    for stream in [false, true] {
        let before = f.bridge.mock.requests().len();
        let (message, records) = exchange(
            &f,
            r#"[[tool:bmcp_test_echo {"text":"hello-from-mcp"}]]"#,
            stream,
        )
        .await;
        assert_eq!(texts(&message), vec!["Tool result: hello-from-mcp"]);
        assert!(tool_names(&message).is_empty(), "{message}");
        assert_eq!(message["stop_reason"], "end_turn");
        // Two upstream calls: 11 + 13 input, 3 + 5 output, summed for the client.
        assert_eq!(message["usage"]["input_tokens"], 24, "{message}");
        assert_eq!(message["usage"]["output_tokens"], 8, "{message}");
        let tools = records_of_kind!(records, ToolUsage);
        assert_eq!(tools.len(), 1, "{records:#?}");
        let t = &tools[0];
        assert_eq!(
            (t.tool.as_str(), t.injected, t.invocation_error.as_deref()),
            ("bmcp_test_echo", true, None)
        );
        assert_eq!(t.server_url.as_deref(), Some(f.mcp_url.as_str()));
        assert_eq!(t.input, json!({"text": "hello-from-mcp"}));
        let usage = records_of_kind!(records, TokenUsage);
        assert_eq!(
            usage
                .iter()
                .map(|u| (u.input_tokens, u.output_tokens))
                .collect::<Vec<_>>(),
            vec![(11, 3), (13, 5)]
        );
        // Two rounds, no retry: `attempts - 1` counts retries only.
        let ended = records_of_kind!(records, InterceptionEnded);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].attempts, 1);
        assert_eq!(ended[0].metadata.get("upstream_rounds"), Some(&json!(2)));
        // The conversation sent upstream: injected tools offered after the client's, then the
        // assistant turn and its tool_result.
        let reqs = f.bridge.mock.requests();
        assert_eq!(reqs.len() - before, 2);
        let first = reqs[before].json();
        let names: Vec<_> = first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names[0], "get_weather");
        assert!(names.contains(&"bmcp_test_echo".to_owned()));
        assert!(
            !names.contains(&"bmcp_test_pid".to_owned()),
            "denied tool offered: {names:?}"
        );
        assert_eq!(
            first["tools"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        let second = reqs[before + 1].json();
        let msgs = second["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"][0]["name"], "bmcp_test_echo");
        assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
        assert_eq!(
            msgs[2]["content"][0]["tool_use_id"],
            msgs[1]["content"][0]["id"]
        );
        assert_eq!(
            msgs[2]["content"][0]["content"][0]["text"],
            "hello-from-mcp"
        );
    }
}

#[tokio::test]
async fn two_injected_calls_in_one_turn_and_a_failing_one() {
    let f = start(10).await;
    for stream in [false, true] {
        let (message, records) = exchange(
            &f,
            r#"[[tool:bmcp_test_echo {"text":"a"}]] [[tool:bmcp_test_add {"a":2,"b":3}]]"#,
            stream,
        )
        .await;
        assert_eq!(texts(&message), vec!["Tool result: a | 5"]);
        let server = Some(f.mcp_url.as_str());
        assert_eq!(
            tool_rows(&records),
            vec![
                row("bmcp_test_echo", true, json!({"text": "a"}), None, server),
                row("bmcp_test_add", true, json!({"a": 2, "b": 3}), None, server),
            ]
        );

        let (message, records) =
            exchange(&f, r#"[[tool:bmcp_test_fail {"message":"boom"}]]"#, stream).await;
        assert_eq!(texts(&message), vec!["Tool result: boom"]);
        assert_eq!(
            tool_rows(&records),
            vec![row(
                "bmcp_test_fail",
                true,
                json!({"message": "boom"}),
                Some("boom"),
                server
            )]
        );
        let last = f.bridge.mock.requests().last().unwrap().json();
        let result = &last["messages"].as_array().unwrap().last().unwrap()["content"][0];
        assert_eq!(result["is_error"], true);
    }
}

#[tokio::test]
async fn a_call_past_its_timeout_is_an_error_result() {
    let f = start(10).await;
    for stream in [false, true] {
        let (message, records) =
            exchange(&f, r#"[[tool:bmcp_test_slow {"ms":3000}]]"#, stream).await;
        let error = "the call to `slow` on MCP server `test` timed out after 500ms";
        assert_eq!(
            tool_rows(&records),
            vec![row(
                "bmcp_test_slow",
                true,
                json!({"ms": 3000}),
                Some(error),
                Some(&f.mcp_url)
            )]
        );
        assert_eq!(texts(&message), vec![format!("Tool result: {error}")]);
    }
}

#[tokio::test]
async fn text_before_an_injected_call_reaches_the_client() {
    let f = start(10).await;
    for stream in [false, true] {
        let (message, _) = exchange(
            &f,
            r#"[[text-then-tool:bmcp_test_echo {"text":"x"}]]"#,
            stream,
        )
        .await;
        assert_eq!(
            texts(&message),
            vec!["Calling bmcp_test_echo.", "Tool result: x"]
        );
    }
}

#[tokio::test]
async fn the_loop_stops_at_its_cap() {
    let f = start(2).await;
    for stream in [false, true] {
        let before = f.bridge.mock.requests().len();
        // Each echoed text asks for one more call: deeper than the cap.
        let mut levels = vec!["done".to_owned()];
        for _ in 0..4 {
            let next = format!(
                "[[tool:bmcp_test_echo {}]]",
                json!({ "text": levels.last() })
            );
            levels.push(next);
        }
        let prompt = levels[4].clone();
        let (message, records) = exchange(&f, &prompt, stream).await;
        let calls = f.bridge.mock.requests().len() - before;
        assert_eq!(
            calls, 4,
            "2 rounds of tools, the capped round, and the final answer"
        );
        assert!(tool_names(&message).is_empty());
        assert!(
            texts(&message).concat().contains("tool loop limit reached"),
            "{message}"
        );
        let last = f.bridge.mock.requests().last().unwrap().json();
        assert_eq!(last["tool_choice"], json!({"type": "none"}));
        let usage: Vec<_> = records_of_kind!(records, TokenUsage)
            .iter()
            .map(|u| (u.input_tokens, u.output_tokens))
            .collect();
        // Each round adds the assistant turn and its results to the conversation.
        assert_eq!(usage, vec![(11, 3), (13, 3), (15, 3), (17, 5)]);
        // Every call the model made is recorded: two ran, the one at the cap did not.
        let tools = records_of_kind!(records, ToolUsage);
        let runs: Vec<_> = tools
            .iter()
            .map(|t| (t.server_url.as_deref(), t.invocation_error.as_deref()))
            .collect();
        let server = Some(f.mcp_url.as_str());
        assert_eq!(
            runs,
            vec![
                (server, None),
                (server, None),
                // Not run, but the audit still names the server that offered it.
                (server, Some("not run: tool loop limit reached"))
            ],
            "{records:#?}"
        );
        // The capped call is the third: the one whose text is the first level's directive.
        assert_eq!(tools[2].input, json!({ "text": levels[1] }));
    }
}

#[tokio::test]
async fn client_tools_still_work_beside_injected_ones() {
    let f = start(10).await;
    for stream in [false, true] {
        let (message, records) =
            exchange(&f, r#"[[tool:get_weather {"city":"Rome"}]]"#, stream).await;
        assert_eq!(tool_names(&message), vec!["get_weather"]);
        assert_eq!(message["stop_reason"], "tool_use");
        assert_eq!(
            tool_rows(&records),
            vec![row(
                "get_weather",
                false,
                json!({"city": "Rome"}),
                None,
                None
            )]
        );

        // A turn calling both: the client gets its call; the injected one is not run.
        let (message, records) = exchange(
            &f,
            r#"[[tool:get_weather {"city":"Rome"}]] [[tool:bmcp_test_echo {"text":"y"}]]"#,
            stream,
        )
        .await;
        assert_eq!(tool_names(&message), vec!["get_weather"]);
        assert_eq!(
            tool_rows(&records),
            vec![
                row("get_weather", false, json!({"city": "Rome"}), None, None),
                row(
                    "bmcp_test_echo",
                    true,
                    json!({"text": "y"}),
                    Some(
                        "not run: the same turn called client tools, so the turn went to the client"
                    ),
                    Some(&f.mcp_url)
                ),
            ]
        );
    }
}

#[tokio::test]
async fn images_and_resources_reach_the_model_as_blocks() {
    let f = start(10).await;
    let last_result = || {
        let last = f.bridge.mock.requests().last().unwrap().json();
        let result = last["messages"].as_array().unwrap().last().unwrap()["content"][0].clone();
        assert_eq!(result["type"], "tool_result");
        assert_eq!(result["is_error"], false);
        result["content"].clone()
    };
    exchange(&f, "[[tool:bmcp_test_image]]", false).await;
    assert_eq!(
        last_result(),
        json!([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": test_mcp::TINY_PNG}}])
    );
    let (message, _) = exchange(&f, "[[tool:bmcp_test_resource]]", false).await;
    assert_eq!(
        last_result(),
        json!([
            {"type": "text", "text": "[resource test://resource/text]\nhello from a resource"},
            {"type": "text", "text": "[resource test://resource/blob: application/octet-stream]"},
        ])
    );
    assert_eq!(
        texts(&message),
        vec![
            "Tool result: [resource test://resource/text]\nhello from a resource\n[resource test://resource/blob: application/octet-stream]"
        ]
    );
}

#[tokio::test]
async fn requests_that_skip_injection_go_upstream_untouched() {
    let f = start(10).await;
    let weather = request("hi", false)["tools"].clone();
    let untouched = [
        // Claude Code's small fast model, with no tools of its own.
        json!({"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "title?"}]}),
        // An explicitly empty tool list (Claude Code's title side request).
        json!({"model": "claude-test-1", "max_tokens": 16, "tools": [], "messages": [{"role": "user", "content": "hi"}]}),
        // Tools forbidden by the client.
        json!({"model": "claude-test-1", "max_tokens": 16, "tools": weather, "tool_choice": {"type": "none"}, "messages": [{"role": "user", "content": "hi"}]}),
    ];
    for body in untouched {
        let sent = body.to_string();
        let resp = f.bridge.post(MESSAGES, &[], sent.clone()).await;
        assert_eq!(resp.status(), 200);
        let upstream = f.bridge.mock.requests().last().unwrap().clone();
        assert_eq!(String::from_utf8_lossy(&upstream.body), sent);
    }
    // The small fast model with tools of its own gets the injected ones too.
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 16, "tools": weather, "messages": [{"role": "user", "content": "hi"}]});
    f.bridge.post(MESSAGES, &[], body.to_string()).await;
    let upstream = f.bridge.mock.requests().last().unwrap().json();
    let names: Vec<_> = upstream["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "get_weather",
            "bmcp_test_add",
            "bmcp_test_echo",
            "bmcp_test_fail",
            "bmcp_test_image",
            "bmcp_test_resource",
            "bmcp_test_slow"
        ]
    );
}

/// A tool source whose one tool disappears right after it is offered, as when a server's
/// `tools/list_changed` lands while a request runs.
#[derive(Default)]
struct VanishingTools {
    listed: std::sync::atomic::AtomicUsize,
    called: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ToolSource for VanishingTools {
    fn tools(&self) -> Arc<[aibridge::mcp::InjectedTool]> {
        if self
            .listed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            return Arc::from(Vec::new());
        }
        Arc::from(vec![aibridge::mcp::InjectedTool {
            name: "bmcp_gone_echo".into(),
            server: "gone".into(),
            server_url: "http://gone.invalid/mcp".into(),
            tool: "echo".into(),
            description: Some("Echo".into()),
            input_schema: json!({"type": "object"}),
        }])
    }

    async fn call(
        &self,
        name: &str,
        _arguments: Option<serde_json::Map<String, Value>>,
    ) -> aibridge::mcp::ToolCallResult {
        self.called.lock().unwrap().push(name.to_owned());
        aibridge::mcp::ToolCallResult {
            content: vec![aibridge::mcp::ToolResultContent::Text("still mine".into())],
            is_error: false,
            invocation_error: None,
            server_url: "http://gone.invalid/mcp".into(),
        }
    }
}

#[tokio::test]
async fn a_call_of_an_offered_tool_stays_with_the_bridge_after_the_tools_change() {
    let source = Arc::new(VanishingTools::default());
    let bridge = TestBridge::start_with(Setup {
        tools: Some(source.clone() as Arc<dyn ToolSource>),
        ..Default::default()
    })
    .await;
    let body = request(r#"[[tool:bmcp_gone_echo {"text":"x"}]]"#, false);
    let resp = bridge.post(MESSAGES, &[], body.to_string()).await;
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    // The source no longer lists the tool, but this request offered it: the bridge ran it.
    assert_eq!(texts(&message), vec!["Tool result: still mine"]);
    assert!(tool_names(&message).is_empty(), "{message}");
    assert_eq!(*source.called.lock().unwrap(), vec!["bmcp_gone_echo"]);
    assert_eq!(source.listed.load(std::sync::atomic::Ordering::SeqCst), 1);
}
