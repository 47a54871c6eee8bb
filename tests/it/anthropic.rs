//! Anthropic Messages through the bridge: blocking and streaming scenarios against the mock
//! upstream's smart mode, with the exact records each one leaves.

use aibridge::record::{Outcome, Record};
use serde_json::{Value, json};

use crate::records_of_kind;
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

#[tokio::test]
async fn simple_text_blocking_and_streaming() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (status, body, records) = run(&bridge, "hello there", stream).await;
        assert_eq!(status, 200);
        assert_eq!(answer_text(&body, stream), "Mock answer: hello there");
        let started = records_of_kind!(records, Interception);
        assert_eq!(started.len(), 1);
        let s = &started[0];
        assert_eq!(
            (
                s.initiator_id.as_str(),
                s.provider.as_str(),
                s.provider_name.as_str()
            ),
            ("local", "anthropic", "anthropic")
        );
        assert_eq!(
            (s.api.as_str(), s.model.as_str(), s.streaming),
            ("messages", "claude-test-1", stream)
        );
        assert_eq!(s.credential_kind, "byok");
        assert_eq!(s.credential_hint.as_deref(), Some("sk-a…3456"));
        let prompts = records_of_kind!(records, Prompt);
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].prompt, "hello there");
        assert!(prompts[0].provider_response_id.starts_with("msg_mock"));
        let usage = records_of_kind!(records, TokenUsage);
        assert_eq!(usage.len(), 1);
        assert_eq!(
            (
                usage[0].input_tokens,
                usage[0].output_tokens,
                usage[0].cache_read_input_tokens,
                usage[0].cache_write_input_tokens
            ),
            (11, 5, 0, 0)
        );
        assert!(records_of_kind!(records, ToolUsage).is_empty());
        let ended = records_of_kind!(records, InterceptionEnded);
        assert_eq!(
            (
                ended[0].outcome,
                ended[0].upstream_status,
                ended[0].attempts
            ),
            (Outcome::Completed, Some(200), 1)
        );
        // Order per interception: start first, end last.
        assert!(matches!(records.first(), Some(Record::Interception(_))));
        assert!(matches!(records.last(), Some(Record::InterceptionEnded(_))));
    }
}

#[tokio::test]
async fn client_tool_calls_are_recorded_each() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (_, _, records) =
            run(&bridge, r#"[[tool:get_weather {"city":"Paris"}]]"#, stream).await;
        let tools = records_of_kind!(records, ToolUsage);
        assert_eq!(tools.len(), 1, "{records:#?}");
        assert_eq!(
            (tools[0].tool.as_str(), tools[0].injected),
            ("get_weather", false)
        );
        assert_eq!(tools[0].input, json!({"city": "Paris"}));
        assert!(
            tools[0]
                .provider_tool_call_id
                .as_deref()
                .unwrap()
                .starts_with("toolu_mock")
        );
        assert_eq!(records_of_kind!(records, TokenUsage)[0].output_tokens, 3);

        let (_, _, records) = run(
            &bridge,
            r#"[[tool:get_weather {"city":"Oslo"}]] [[tool:get_time]]"#,
            stream,
        )
        .await;
        let tools = records_of_kind!(records, ToolUsage);
        let names: Vec<_> = tools
            .iter()
            .map(|t| (t.tool.as_str(), t.input.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("get_weather", json!({"city": "Oslo"})),
                ("get_time", json!({}))
            ]
        );
        assert_eq!(records_of_kind!(records, TokenUsage)[0].output_tokens, 5);
    }
}

#[tokio::test]
async fn thinking_is_recorded_as_a_thought() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (_, _, records) = run(&bridge, "[[thinking]] think first", stream).await;
        let thoughts = records_of_kind!(records, ModelThought);
        assert_eq!(thoughts.len(), 1, "{records:#?}");
        assert!(!thoughts[0].content.is_empty());
        assert_eq!(thoughts[0].metadata["source"], "thinking");
        assert_eq!(records_of_kind!(records, TokenUsage)[0].output_tokens, 7);
    }
}

#[tokio::test]
async fn cache_reads_are_recorded_apart_from_input() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (_, _, records) = run(&bridge, "[[cached:7]] again", stream).await;
        let usage = &records_of_kind!(records, TokenUsage)[0];
        assert_eq!((usage.input_tokens, usage.cache_read_input_tokens), (11, 7));
    }
}

#[tokio::test]
async fn upstream_error_status_is_relayed_before_the_stream() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let (status, body, records) = run(&bridge, "[[status:400]]", stream).await;
        assert_eq!(status, 400);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let ended = &records_of_kind!(records, InterceptionEnded)[0];
        assert_eq!(
            (ended.outcome, ended.upstream_status),
            (Outcome::UpstreamError, Some(400))
        );
        // The prompt is kept even though the upstream refused.
        assert_eq!(records_of_kind!(records, Prompt).len(), 1);
    }
}

#[tokio::test]
async fn mid_stream_error_event_reaches_the_client() {
    let bridge = TestBridge::start().await;
    let (status, body, records) = run(&bridge, "[[error:overloaded]]", true).await;
    assert_eq!(status, 200);
    assert!(body.contains("event: error"), "{body}");
    assert!(body.contains("overloaded_error"), "{body}");
    let ended = &records_of_kind!(records, InterceptionEnded)[0];
    assert_eq!(ended.outcome, Outcome::UpstreamError);
    assert!(
        ended.metadata["error"]
            .as_str()
            .unwrap()
            .contains("overloaded")
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
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("upstream unreachable")
        );
        let ended = &records_of_kind!(records, InterceptionEnded)[0];
        assert_eq!(
            (ended.outcome, ended.upstream_status),
            (Outcome::UpstreamUnavailable, None)
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

    let filler = "x".repeat(5 * 1024 * 1024);
    let big = format!(
        r#"{{"model":"claude-test-1","max_tokens":5,"messages":[{{"role":"user","content":"{filler}"}}]}}"#
    );
    let resp = bridge.post(MESSAGES, &[], big.clone()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(bridge.mock.requests()[1].body.len(), big.len());
    assert!(bridge.mock.requests()[1].body.as_ref() == big.as_bytes());
}

#[tokio::test]
async fn headers_are_forwarded_verbatim_without_hop_by_hop_ones() {
    let bridge = TestBridge::start().await;
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
            request("hi", false).to_string(),
        )
        .await;
    let id = interception_id(&resp);
    let got = &bridge.mock.requests()[0];
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
    let records = bridge.records_of(id).await;
    let s = &records_of_kind!(records, Interception)[0];
    assert_eq!(s.client, "claude-code");
    assert_eq!(s.client_session_id.as_deref(), Some("sess-123"));
    assert_eq!(
        s.user_agent.as_deref(),
        Some("claude-cli/2.1.330 (external, cli)")
    );
}

#[tokio::test]
async fn session_id_from_metadata_user_id() {
    let bridge = TestBridge::start().await;
    let mut body = request("hi", false);
    body["metadata"] =
        json!({"user_id": r#"{"device_id":"abc","account_uuid":"","session_id":"5f0c-11"}"#});
    let resp = bridge.post(MESSAGES, &[], body.to_string()).await;
    let records = bridge.records_of(interception_id(&resp)).await;
    assert_eq!(
        records_of_kind!(records, Interception)[0]
            .client_session_id
            .as_deref(),
        Some("5f0c-11")
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
    let m = bridge.metrics().await;
    assert!(m.contains(r#"aibridge_interceptions_total{provider="anthropic",model="claude-test-1",status="completed",route="messages",client="unknown"} 1"#), "{m}");
    assert!(
        m.contains(
            r#"aibridge_tokens_total{provider="anthropic",model="claude-test-1",type="output"} 5"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"aibridge_prompts_total{provider="anthropic",model="claude-test-1"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("aibridge_interceptions_inflight{provider=\"anthropic\",route=\"messages\"} 0"),
        "{m}"
    );
    assert!(m.contains("aibridge_upstream_ttfb_seconds_count"), "{m}");
}

/// Replays a fixture pair (blocking JSON, SSE transcript) and returns the records of each.
async fn replay(bridge: &TestBridge, name: &str) -> [Vec<Record>; 2] {
    use mock_upstream::{MockResponse, fixture};
    let mut out = Vec::new();
    for stream in [false, true] {
        if stream {
            bridge
                .mock
                .enqueue(MockResponse::sse_fixture(&format!("anthropic/{name}.sse")));
        } else {
            bridge.mock.enqueue(MockResponse::json_fixture(
                200,
                &format!("anthropic/{name}.json"),
            ));
        }
        let resp = bridge
            .post(MESSAGES, &[], request("replay", stream).to_string())
            .await;
        assert_eq!(resp.status(), 200);
        let id = interception_id(&resp);
        let body = resp.bytes().await.unwrap();
        // Events the bridge has no reason to change arrive as the exact bytes sent.
        let sent = fixture(&format!(
            "anthropic/{name}.{}",
            if stream { "sse" } else { "json" }
        ));
        assert_eq!(body, sent, "{name} stream={stream}");
        out.push(bridge.records_of(id).await);
    }
    out.try_into().unwrap()
}

#[tokio::test]
async fn fixtures_thinking_then_tool_use() {
    let bridge = TestBridge::start().await;
    for records in replay(&bridge, "thinking_then_tool_use").await {
        let thoughts = records_of_kind!(records, ModelThought);
        assert_eq!(thoughts.len(), 1, "{records:#?}");
        assert_eq!(thoughts[0].metadata["source"], "thinking");
        let tools = records_of_kind!(records, ToolUsage);
        assert_eq!(tools.len(), 1);
        assert_eq!(
            (tools[0].tool.as_str(), tools[0].input.clone()),
            ("search_docs", json!({"query": "release notes"}))
        );
        let u = &records_of_kind!(records, TokenUsage)[0];
        assert_eq!((u.input_tokens, u.output_tokens), (520, 180));
    }
}

#[tokio::test]
async fn fixtures_cache_usage_and_parallel_tools() {
    let bridge = TestBridge::start().await;
    for records in replay(&bridge, "cache_usage").await {
        let u = &records_of_kind!(records, TokenUsage)[0];
        assert_eq!(
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_input_tokens,
                u.cache_write_input_tokens
            ),
            (12, 40, 1800, 250)
        );
    }
    for records in replay(&bridge, "parallel_tool_use").await {
        let tools: Vec<_> = records_of_kind!(records, ToolUsage)
            .into_iter()
            .map(|t| (t.tool, t.input))
            .collect();
        assert_eq!(
            tools,
            vec![
                (
                    "get_weather".to_owned(),
                    json!({"location": "Paris, France"})
                ),
                ("get_time".to_owned(), json!({"timezone": "Europe/Paris"})),
            ]
        );
        let u = &records_of_kind!(records, TokenUsage)[0];
        assert_eq!((u.input_tokens, u.output_tokens), (430, 95));
    }
}

#[tokio::test]
async fn fixtures_sse_edge_cases_relay_exactly() {
    let bridge = TestBridge::start().await;
    let streamed = replay_stream_only(&bridge, "sse_edge_cases").await;
    let u = &records_of_kind!(streamed, TokenUsage)[0];
    assert_eq!((u.input_tokens, u.output_tokens), (25, 3));
}

async fn replay_stream_only(bridge: &TestBridge, name: &str) -> Vec<Record> {
    use mock_upstream::{MockResponse, fixture};
    bridge
        .mock
        .enqueue(MockResponse::sse_fixture(&format!("anthropic/{name}.sse")));
    let resp = bridge
        .post(MESSAGES, &[], request("replay", true).to_string())
        .await;
    let id = interception_id(&resp);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body, fixture(&format!("anthropic/{name}.sse")));
    bridge.records_of(id).await
}
