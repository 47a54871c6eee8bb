//! Anthropic Messages through the bridge: blocking and streaming scenarios against the mock
//! upstream's smart mode, with the exact records each one leaves.

use aibridge::record::Record;
use serde_json::{Value, json};

use crate::openai_chat::{ended, normalized, prompt, thought};
use crate::support::{TestBridge, interception_id};

const MESSAGES: &str = "/anthropic/v1/messages";

fn request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "claude-test-1",
        "max_tokens": 256,
        "stream": stream,
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "get_time", "description": "Time", "input_schema": {"type": "object", "properties": {}}}
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    })
}

/// Joins the text of a blocking body or a stream's text deltas.
fn answer_text(body: &str, stream: bool) -> String {
    if !stream {
        let v: Value = serde_json::from_str(body).unwrap();
        return v["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect();
    }
    body.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "text_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn run(bridge: &TestBridge, prompt: &str, stream: bool) -> (u16, String, Vec<Record>) {
    let resp = bridge
        .post(
            MESSAGES,
            &[
                ("x-api-key", "sk-ant-client-key-123456"),
                ("anthropic-version", "2023-06-01"),
            ],
            request(prompt, stream).to_string(),
        )
        .await;
    let status = resp.status().as_u16();
    let id = interception_id(&resp);
    let body = resp.text().await.unwrap();
    (status, body, bridge.records_of(id).await)
}

/// The interception record of `run`'s requests (single user, the client's own key).
fn started(streaming: bool) -> Value {
    json!({"kind": "interception", "initiator_id": "local", "provider": "anthropic",
        "provider_name": "anthropic", "api": "messages", "model": "claude-test-1",
        "client": "unknown", "user_agent": null, "client_session_id": null,
        "credential_kind": "byok", "credential_hint": "sk-a…3456", "streaming": streaming,
        "metadata": {}})
}

fn usage(
    response_id: &str,
    input: i64,
    output: i64,
    cache_read: i64,
    cache_write: i64,
    extra: Value,
) -> Value {
    json!({"kind": "token_usage", "provider_response_id": response_id, "input_tokens": input,
        "output_tokens": output, "cache_read_input_tokens": cache_read,
        "cache_write_input_tokens": cache_write, "extra": extra})
}

/// The extra token counts the mock (and most fixtures) report: both cache TTLs at zero.
fn no_cache_writes() -> Value {
    json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0})
}

fn tool_use(response_id: &str, call: &str, name: &str, input: Value) -> Value {
    crate::openai_chat::tool(response_id, call, name, input, json!({}))
}

/// The mock's response id for its `n`th id (ids count up per mock: messages and tool calls).
fn mock_id(prefix: &str, n: u32) -> String {
    format!("{prefix}_mock{n:06}")
}

#[tokio::test]
async fn simple_text_blocking_and_streaming() {
    let bridge = TestBridge::start().await;
    for (n, stream) in [(1, false), (2, true)] {
        let (status, body, records) = run(&bridge, "hello there", stream).await;
        assert_eq!(status, 200);
        assert_eq!(answer_text(&body, stream), "Mock answer: hello there");
        let msg = mock_id("msg", n);
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt(&msg, "hello there"),
                usage(&msg, 11, 5, 0, 0, no_cache_writes()),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn client_tool_calls_are_recorded_each() {
    let bridge = TestBridge::start().await;
    let mut n = 0;
    let mut next = |prefix: &str| {
        n += 1;
        mock_id(prefix, n)
    };
    for stream in [false, true] {
        let one = r#"[[tool:get_weather {"city":"Paris"}]]"#;
        let (_, _, records) = run(&bridge, one, stream).await;
        let (msg, call) = (next("msg"), next("toolu"));
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt(&msg, one),
                usage(&msg, 11, 3, 0, 0, no_cache_writes()),
                tool_use(&msg, &call, "get_weather", json!({"city": "Paris"})),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );

        let two = r#"[[tool:get_weather {"city":"Oslo"}]] [[tool:get_time]]"#;
        let (_, _, records) = run(&bridge, two, stream).await;
        let (msg, call1, call2) = (next("msg"), next("toolu"), next("toolu"));
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt(&msg, two),
                usage(&msg, 11, 5, 0, 0, no_cache_writes()),
                tool_use(&msg, &call1, "get_weather", json!({"city": "Oslo"})),
                tool_use(&msg, &call2, "get_time", json!({})),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn thinking_is_recorded_as_a_thought() {
    let bridge = TestBridge::start().await;
    for (n, stream) in [(1, false), (2, true)] {
        let text = "[[thinking]] think first";
        let (_, _, records) = run(&bridge, text, stream).await;
        let msg = mock_id("msg", n);
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt(&msg, text),
                usage(&msg, 11, 7, 0, 0, no_cache_writes()),
                thought("Mock thinking about: [[thinking]] think first", "thinking"),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn cache_reads_are_recorded_apart_from_input() {
    let bridge = TestBridge::start().await;
    for (n, stream) in [(1, false), (2, true)] {
        let text = "[[cached:7]] again";
        let (_, _, records) = run(&bridge, text, stream).await;
        let msg = mock_id("msg", n);
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt(&msg, text),
                usage(&msg, 11, 5, 7, 0, no_cache_writes()),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn upstream_error_status_is_relayed_before_the_stream() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (status, body, records) = run(&bridge, "[[status:400]]", stream).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Mock upstream error for [[status:400]]."},"request_id":"req_mock_error"}"#
        );
        // The prompt is kept even though the upstream refused; the end keeps the body.
        assert_eq!(
            normalized(&records),
            vec![
                started(stream),
                prompt("", "[[status:400]]"),
                ended("upstream_error", 400, json!({"error": body})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn mid_stream_error_event_reaches_the_client() {
    let bridge = TestBridge::start().await;
    let (status, body, records) = run(&bridge, "[[error:overloaded]]", true).await;
    assert_eq!(status, 200);
    assert!(body.contains("event: error"), "{body}");
    assert!(body.contains("overloaded_error"), "{body}");
    let msg = mock_id("msg", 1);
    assert_eq!(
        normalized(&records),
        vec![
            started(true),
            prompt(&msg, "[[error:overloaded]]"),
            usage(&msg, 11, 1, 0, 0, no_cache_writes()),
            ended(
                "upstream_error",
                200,
                json!({"error": "overloaded_error: Overloaded"})
            ),
        ]
    );
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_in_anthropic_format() {
    let bridge = TestBridge::start_with(crate::support::Setup {
        upstream_override: Some("http://127.0.0.1:1".into()),
        ..Default::default()
    })
    .await;
    for stream in [false, true] {
        let (status, body, records) = run(&bridge, "hi", stream).await;
        assert_eq!(status, 502);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "api_error");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("upstream unreachable"), "{message}");
        let mut end = ended("upstream_unavailable", 0, json!({"error": message}));
        end["upstream_status"] = Value::Null;
        assert_eq!(
            normalized(&records),
            vec![started(stream), prompt("", "hi"), end],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_400_and_nothing_goes_upstream() {
    let bridge = TestBridge::start().await;
    for (body, fragment) in [
        ("not json", "not valid JSON"),
        (r#"{"messages":[]}"#, "model"),
        (r#"{"model":"m","stream":"yes","messages":[]}"#, "stream"),
        // serde would fill the request view from an array by position.
        (r#"["claude-test-1", false, []]"#, "must be a JSON object"),
    ] {
        let resp = bridge.post(MESSAGES, &[], body).await;
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(fragment),
            "{v}"
        );
    }
    assert!(bridge.mock.requests().is_empty());
    assert!(bridge.metrics().await.contains(
        "aibridge_rejected_requests_total{provider=\"anthropic\",reason=\"invalid_body\"} 4"
    ));
}

#[tokio::test]
async fn bodies_reach_the_upstream_byte_identical() {
    let bridge = TestBridge::start().await;
    // Unknown fields, odd spacing, key order, big numbers, signatures, a system turn.
    let body = r#"{ "model":"claude-test-1","max_tokens":1024,"zzz_future_field":{"b":1,"a":[1.50,2e3]},
      "thinking":{"type":"enabled","budget_tokens":2048},
      "context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
      "system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
      "messages":[{"role":"user","content":"q"},
        {"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"EqQBCkYIBxgCKkDa+/=="},{"type":"text","text":"a"}]},
        {"role":"system","content":"env info"},
        {"role":"user","content":[{"type":"text","text":"next","cache_control":{"type":"ephemeral","ttl":"1h"}}]}],
      "big": 12345678901234567890123 }"#;
    let resp = bridge.post(MESSAGES, &[], body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(bridge.mock.requests()[0].body.as_ref(), body.as_bytes());
    // The same body asking for a stream.
    let streamed = body.replacen(
        "\"max_tokens\":1024,",
        "\"max_tokens\":1024, \"stream\" :true,",
        1,
    );
    assert_ne!(streamed, body);
    let resp = bridge.post(MESSAGES, &[], streamed.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(bridge.mock.requests()[1].body.as_ref(), streamed.as_bytes());

    let filler = "x".repeat(5 * 1024 * 1024);
    let big = format!(
        r#"{{"model":"claude-test-1","max_tokens":5,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    );
    let resp = bridge.post(MESSAGES, &[], big.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(bridge.mock.requests()[2].body.len(), big.len());
    assert!(bridge.mock.requests()[2].body.as_ref() == big.as_bytes());
}

#[tokio::test]
async fn headers_are_forwarded_verbatim_without_hop_by_hop_ones() {
    let bridge = TestBridge::start().await;
    for (n, stream) in [(1, false), (2, true)] {
        let resp = bridge
            .post(
                &format!("{MESSAGES}?beta=true"),
                &[
                    ("anthropic-version", "2023-06-01"),
                    (
                        "anthropic-beta",
                        "claude-code-20250219,interleaved-thinking-2025-05-14",
                    ),
                    ("x-claude-code-session-id", "sess-123"),
                    ("x-brand-new-header", "kept"),
                    ("keep-alive", "timeout=5"),
                    ("proxy-authorization", "Basic c2VjcmV0"),
                    ("x-aibridge-actor-id", "mallory"),
                    ("user-agent", "claude-cli/2.1.330 (external, cli)"),
                    ("x-api-key", "sk-ant-byok-abcdefghijkl"),
                    ("authorization", "Bearer sk-ant-byok-abcdefghijkl"),
                ],
                request("hi", stream).to_string(),
            )
            .await;
        let id = interception_id(&resp);
        let got = &bridge.mock.requests()[n - 1];
        assert_eq!(got.path_and_query, "/v1/messages?beta=true");
        assert_eq!(
            got.header("anthropic-beta"),
            Some("claude-code-20250219,interleaved-thinking-2025-05-14")
        );
        assert_eq!(got.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(got.header("x-claude-code-session-id"), Some("sess-123"));
        assert_eq!(got.header("x-brand-new-header"), Some("kept"));
        assert_eq!(got.header("keep-alive"), None);
        assert_eq!(got.header("proxy-authorization"), None);
        assert_eq!(got.header("x-aibridge-actor-id"), None);
        // Bring-your-own-key: both client credentials go upstream as sent.
        assert_eq!(got.header("x-api-key"), Some("sk-ant-byok-abcdefghijkl"));
        assert_eq!(
            got.header("authorization"),
            Some("Bearer sk-ant-byok-abcdefghijkl")
        );
        // The actor header is ignored (trusted headers are off by default): the actor is `local`.
        let mut start = started(stream);
        start["client"] = json!("claude-code");
        start["client_session_id"] = json!("sess-123");
        start["user_agent"] = json!("claude-cli/2.1.330 (external, cli)");
        start["credential_hint"] = json!("sk-a…ijkl");
        let msg = mock_id("msg", n as u32);
        assert_eq!(
            normalized(&bridge.records_of(id).await),
            vec![
                start,
                prompt(&msg, "hi"),
                usage(&msg, 11, 5, 0, 0, no_cache_writes()),
                ended("completed", 200, json!({})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn session_id_from_metadata_user_id() {
    let bridge = TestBridge::start().await;
    let mut body = request("hi", false);
    body["metadata"] =
        json!({"user_id": r#"{"device_id":"abc","account_uuid":"","session_id":"5f0c-11"}"#});
    let resp = bridge.post(MESSAGES, &[], body.to_string()).await;
    let mut start = replay_started(false);
    start["client_session_id"] = json!("5f0c-11");
    let msg = mock_id("msg", 1);
    assert_eq!(
        normalized(&bridge.records_of(interception_id(&resp)).await),
        vec![
            start,
            prompt(&msg, "hi"),
            usage(&msg, 11, 5, 0, 0, no_cache_writes()),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn passthrough_keeps_method_query_and_body() {
    let bridge = TestBridge::start().await;
    let body = r#"{"model":"claude-test-1","messages":[{"role":"user","content":"count me"}]}"#;
    let resp = bridge
        .post(
            "/anthropic/v1/messages/count_tokens?beta=true",
            &[("anthropic-version", "2023-06-01")],
            body,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-aibridge-interception-id").is_none());
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_i64().unwrap() > 0);
    let resp = bridge
        .http
        .get(format!(
            "{}/anthropic/v1/models?limit=2&after_id=x",
            bridge.url
        ))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["data"].is_array());
    let reqs = bridge.mock.requests();
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path_and_query.as_str()),
        ("POST", "/v1/messages/count_tokens?beta=true")
    );
    assert_eq!(reqs[0].body.as_ref(), body.as_bytes());
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path_and_query.as_str()),
        ("GET", "/v1/models?limit=2&after_id=x")
    );
    // Passthrough records nothing.
    assert!(bridge.recorder.records().is_empty());
    let metrics = bridge.metrics().await;
    assert!(
        metrics.contains(
            "aibridge_passthrough_total{provider=\"anthropic\",method=\"GET\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn unknown_top_level_paths_are_404() {
    let bridge = TestBridge::start().await;
    let resp = bridge
        .http
        .get(format!("{}/v2/whatever", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v2/whatever")
    );
}

#[tokio::test]
async fn metrics_count_interceptions_and_tokens() {
    let bridge = TestBridge::start().await;
    run(&bridge, "hi", true).await;
    run(
        &bridge,
        r#"[[tool:get_weather {"city":"Oslo"}]] [[tool:get_time]]"#,
        false,
    )
    .await;
    let m = bridge.metrics().await;
    // Both requests were timed; the model chose two client tools in the second.
    assert!(
        m.contains(r#"aibridge_interceptions_duration_seconds_count{provider="anthropic",route="messages"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"aibridge_non_injected_tool_selections_total{provider="anthropic",model="claude-test-1"} 2"#),
        "{m}"
    );
    assert!(m.contains(r#"aibridge_interceptions_total{provider="anthropic",model="claude-test-1",status="completed",route="messages",client="unknown"} 2"#), "{m}");
    assert!(
        m.contains(
            r#"aibridge_tokens_total{provider="anthropic",model="claude-test-1",type="output"} 10"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"aibridge_prompts_total{provider="anthropic",model="claude-test-1"} 2"#),
        "{m}"
    );
    assert!(
        m.contains("aibridge_interceptions_inflight{provider=\"anthropic\",route=\"messages\"} 0"),
        "{m}"
    );
    assert!(m.contains("aibridge_upstream_ttfb_seconds_count"), "{m}");
}

/// The interception record of a replayed fixture: the request carries no key.
fn replay_started(streaming: bool) -> Value {
    let mut v = started(streaming);
    v["credential_kind"] = json!("none");
    v["credential_hint"] = Value::Null;
    v
}

/// Sends the `replay` request with the fixture `file` (under `anthropic/`) as the upstream's
/// answer; checks that the client gets the fixture's exact bytes and that status, and returns
/// the normalized records.
async fn replay_one(bridge: &TestBridge, file: &str, status: u16, stream: bool) -> Vec<Value> {
    use mock_upstream::{MockResponse, fixture};
    let path = format!("anthropic/{file}");
    bridge.mock.enqueue(if file.ends_with(".sse") {
        MockResponse::sse_fixture(&path)
    } else {
        MockResponse::json_fixture(status, &path)
    });
    let resp = bridge
        .post(MESSAGES, &[], request("replay", stream).to_string())
        .await;
    assert_eq!(resp.status(), status, "{file} stream={stream}");
    let id = interception_id(&resp);
    // Responses the bridge has no reason to change arrive as the exact bytes sent.
    let body = resp.bytes().await.unwrap();
    assert_eq!(body, fixture(&path), "{file} stream={stream}");
    normalized(&bridge.records_of(id).await)
}

/// Replays `name.json` (blocking) and `name.sse` (streaming); `records(stream)` is what each
/// must leave.
async fn replay(bridge: &TestBridge, name: &str, records: impl Fn(bool) -> Vec<Value>) {
    for stream in [false, true] {
        let ext = if stream { "sse" } else { "json" };
        let got = replay_one(bridge, &format!("{name}.{ext}"), 200, stream).await;
        assert_eq!(got, records(stream), "{name}.{ext}");
    }
}

#[tokio::test]
async fn fixtures_two_thinking_blocks_then_tool_use() {
    let bridge = TestBridge::start().await;
    let msg = "msg_01FixThinkingTool000001";
    replay(&bridge, "thinking_then_tool_use", |stream| {
        vec![
            replay_started(stream),
            prompt(msg, "replay"),
            usage(msg, 520, 180, 0, 0, no_cache_writes()),
            tool_use(
                msg,
                "toolu_01FixSearch0000000001",
                "search_docs",
                json!({"query": "release notes"}),
            ),
            thought(
                "The user wants the latest release notes. I should search the docs first.",
                "thinking",
            ),
            thought(
                "The docs index is keyed by title, so the query is \"release notes\".",
                "thinking",
            ),
            ended("completed", 200, json!({})),
        ]
    })
    .await;
}

#[tokio::test]
async fn fixtures_cache_usage_and_parallel_tools() {
    let bridge = TestBridge::start().await;
    let msg = "msg_01FixCacheUsage00000001";
    replay(&bridge, "cache_usage", |stream| {
        vec![
            replay_started(stream),
            prompt(msg, "replay"),
            usage(
                msg,
                12,
                40,
                1800,
                250,
                json!({"ephemeral_5m_input_tokens": 250, "ephemeral_1h_input_tokens": 0}),
            ),
            ended("completed", 200, json!({})),
        ]
    })
    .await;
    let msg = "msg_01FixParallelTools00001";
    replay(&bridge, "parallel_tool_use", |stream| {
        vec![
            replay_started(stream),
            prompt(msg, "replay"),
            usage(msg, 430, 95, 0, 0, no_cache_writes()),
            tool_use(
                msg,
                "toolu_01FixWeather000000002",
                "get_weather",
                json!({"location": "Paris, France"}),
            ),
            tool_use(
                msg,
                "toolu_01FixTime00000000001",
                "get_time",
                json!({"timezone": "Europe/Paris"}),
            ),
            ended("completed", 200, json!({})),
        ]
    })
    .await;
}

/// Extra token types (cache TTLs, server tool use) land in `extra` with their own names; the
/// server-side `web_search` call is recorded as a tool usage marked with its block type.
#[tokio::test]
async fn fixtures_web_search_records_extra_token_types() {
    let bridge = TestBridge::start().await;
    let msg = "msg_01FixWebSearch000000001";
    replay(&bridge, "web_search", |stream| {
        vec![
            replay_started(stream),
            prompt(msg, "replay"),
            usage(
                msg,
                2100,
                310,
                0,
                600,
                json!({"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 600,
                    "web_search_requests": 1}),
            ),
            crate::openai_chat::tool(
                msg,
                "srvtoolu_01FixWebSearch00001",
                "web_search",
                json!({"query": "example release notes"}),
                json!({"type": "server_tool_use"}),
            ),
            ended("completed", 200, json!({})),
        ]
    })
    .await;
}

#[tokio::test]
async fn fixtures_upstream_400_is_relayed_byte_for_byte() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let got = replay_one(&bridge, "error_400.json", 400, stream).await;
        let sent = mock_upstream::fixture("anthropic/error_400.json");
        let sent = std::str::from_utf8(&sent).unwrap();
        assert_eq!(
            got,
            vec![
                replay_started(stream),
                prompt("", "replay"),
                ended("upstream_error", 400, json!({"error": sent})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn fixtures_overloaded_mid_stream_keeps_the_usage_so_far() {
    let bridge = TestBridge::start().await;
    let got = replay_one(&bridge, "error_overloaded_midstream.sse", 200, true).await;
    let msg = "msg_01FixOverloaded00000001";
    assert_eq!(
        got,
        vec![
            replay_started(true),
            prompt(msg, "replay"),
            usage(msg, 25, 1, 0, 0, no_cache_writes()),
            ended(
                "upstream_error",
                200,
                json!({"error": "overloaded_error: Overloaded"})
            ),
        ]
    );
}

#[tokio::test]
async fn fixtures_sse_edge_cases_relay_exactly() {
    let bridge = TestBridge::start().await;
    let got = replay_one(&bridge, "sse_edge_cases.sse", 200, true).await;
    let msg = "msg_01FixEdgeCases000000001";
    assert_eq!(
        got,
        vec![
            replay_started(true),
            prompt(msg, "replay"),
            usage(msg, 25, 3, 0, 0, no_cache_writes()),
            ended("completed", 200, json!({})),
        ]
    );
}
