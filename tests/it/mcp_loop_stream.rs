//! The tool loop's streams over time: the client gets what the model said before its tool
//! call while the tool still runs, and keep-alive events while the loop works (tools running,
//! the next upstream round awaited).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aibridge::intercept::tool_loop::ToolSource;
use aibridge::mcp::{RawMcpConfig, RawMcpServer, ToolRegistry, validate};
use futures_util::StreamExt;
use mock_upstream::{MockBody, MockResponse};
use serde_json::{Value, json};

use crate::support::{Setup, TestBridge};

const KEEPALIVE: Duration = Duration::from_millis(200);
const AUTH: (&str, &str) = ("authorization", "Bearer sk-test-openai-0123456789");

async fn start() -> (TestBridge, test_mcp::HttpServer) {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let raw = RawMcpConfig {
        servers: vec![RawMcpServer {
            name: "test".into(),
            url: Some(server.url()),
            call_timeout: Some("10s".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let registry = ToolRegistry::start(&validate(raw, &|_| None).unwrap(), None);
    registry.wait_ready(Duration::from_secs(10)).await;
    let bridge = TestBridge::start_with(Setup {
        tools: Some(registry as Arc<dyn ToolSource>),
        tool_keepalive: KEEPALIVE,
        ..Default::default()
    })
    .await;
    (bridge, server)
}

/// Each SSE event of a response with the time it arrived.
async fn timed_events(resp: reqwest::Response) -> Vec<(Instant, String)> {
    assert_eq!(resp.status(), 200);
    let mut events = Vec::new();
    let mut buffer = String::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            events.push((Instant::now(), event.trim_end().to_owned()));
        }
    }
    events
}

/// The JSON data of each event that is not a keep-alive.
fn visible_data(events: &[(Instant, String)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(_, e)| !is_keepalive(e))
        .map(|(_, e)| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            serde_json::from_str::<Value>(data).unwrap()
        })
        .collect()
}

/// SSE frames named by each event's `type`.
fn transcript(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect()
}

fn is_keepalive(event: &str) -> bool {
    event.starts_with(':')
        || event.contains("\"type\": \"ping\"")
        || event.contains("\"type\":\"ping\"")
}

/// How many keep-alive events came, and the longest silence from the first event to the last.
fn keepalives(events: &[(Instant, String)]) -> (usize, Duration) {
    let count = events.iter().filter(|(_, e)| is_keepalive(e)).count();
    let gap = events
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    (count, gap)
}

/// The time of the first event containing `needle`.
fn when(events: &[(Instant, String)], needle: &str) -> Instant {
    events
        .iter()
        .find(|(_, e)| e.contains(needle))
        .unwrap_or_else(|| panic!("no event with {needle}: {events:#?}"))
        .0
}

const SLOW: &str = r#"[[text-then-tool:bmcp_test_slow {"ms":1200}]]"#;

/// Per API: the path, the request, the text the model says before its call, and the event
/// that ends the stream.
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (
            "/anthropic/v1/messages",
            json!({"model": "claude-test-1", "max_tokens": 64, "stream": true,
                   "messages": [{"role": "user", "content": SLOW}]}),
            "\"text_delta\"",
            "message_stop",
        ),
        (
            "/openai/v1/chat/completions",
            json!({"model": "gpt-test", "stream": true, "messages": [{"role": "user", "content": SLOW}]}),
            "\"content\":\"Call",
            "[DONE]",
        ),
        (
            "/openai/v1/responses",
            json!({"model": "gpt-test", "stream": true, "input": SLOW}),
            "response.output_text.delta",
            "response.completed",
        ),
    ]
}

#[tokio::test]
async fn text_before_a_slow_call_arrives_at_once_and_keepalives_follow() {
    let (bridge, _server) = start().await;
    for (path, body, text, end) in cases() {
        let resp = bridge.post(path, &[AUTH], body.to_string()).await;
        let events = timed_events(resp).await;
        // The text went out before the tool had even finished (1.2 s).
        let ahead = when(&events, end) - when(&events, text);
        assert!(
            ahead >= Duration::from_millis(1000),
            "{path}: text only {ahead:?} before the end: {events:#?}"
        );
        // While the tool ran: a keep-alive every 200 ms, no silence much longer.
        let (count, gap) = keepalives(&events);
        assert!(count >= 4, "{path}: {count} keep-alives: {events:#?}");
        assert!(
            gap < KEEPALIVE * 2,
            "{path}: {gap:?} of silence: {events:#?}"
        );
        assert!(
            events.last().unwrap().1.contains(end),
            "{path}: {events:#?}"
        );
    }
}

/// A Messages stream whose model calls the injected echo tool.
fn echo_call_stream() -> String {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_r1", "type": "message", "role": "assistant", "model": "claude-test-1", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "bmcp_test_echo", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"text\":\"hi\"}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop"}),
    ];
    transcript(&events)
}

#[tokio::test]
async fn keepalives_continue_while_the_next_round_is_awaited() {
    let (bridge, _server) = start().await;
    bridge.mock.enqueue(MockResponse::sse(echo_call_stream()));
    // The second round's headers take a second; its body then ends with no events at all.
    bridge
        .mock
        .enqueue(MockResponse::fault(MockBody::StallBeforeHeaders(
            Duration::from_millis(1000),
        )));
    let body = json!({"model": "claude-test-1", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = bridge
        .post("/anthropic/v1/messages", &[], body.to_string())
        .await;
    let events = timed_events(resp).await;
    let (count, gap) = keepalives(&events);
    assert!(count >= 4, "{count} pings: {events:#?}");
    assert!(gap < KEEPALIVE * 2, "{gap:?} of silence: {events:#?}");
    // The client still gets a whole message: its end, with the first round's usage.
    let kinds = visible_data(&events);
    assert_eq!(kinds.len(), 3, "{kinds:#?}");
    assert_eq!(kinds[0]["type"], "message_start");
    assert_eq!(
        kinds[1],
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 11, "output_tokens": 3}})
    );
    assert_eq!(kinds[2], json!({"type": "message_stop"}));
}

/// A Responses stream whose model calls the injected echo tool.
fn echo_call_responses_stream() -> String {
    let call = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                      "name": "bmcp_test_echo", "arguments": "{\"text\":\"hi\"}", "status": "completed"});
    let response = |status: &str, output: Value| {
        json!({"id": "resp_r1", "object": "response", "status": status, "model": "gpt-test-1",
               "output": output, "usage": null})
    };
    let events = [
        json!({"type": "response.created", "sequence_number": 0,
               "response": response("in_progress", json!([]))}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1",
                        "name": "bmcp_test_echo", "arguments": "", "status": "in_progress"}}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 2,
               "output_index": 0, "item_id": "fc_1", "delta": "{\"text\":\"hi\"}"}),
        json!({"type": "response.function_call_arguments.done", "sequence_number": 3,
               "output_index": 0, "item_id": "fc_1", "arguments": "{\"text\":\"hi\"}"}),
        json!({"type": "response.output_item.done", "sequence_number": 4, "output_index": 0,
               "item": call}),
        json!({"type": "response.completed", "sequence_number": 5,
               "response": response("completed", json!([call]))}),
    ];
    transcript(&events)
}

#[tokio::test]
async fn a_responses_round_that_ends_without_its_terminal_event_ends_in_an_error_event() {
    let (bridge, _server) = start().await;
    bridge
        .mock
        .enqueue(MockResponse::sse(echo_call_responses_stream()));
    // The second round answers 200 and then ends with no events at all.
    bridge
        .mock
        .enqueue(MockResponse::fault(MockBody::StallBeforeHeaders(
            Duration::from_millis(10),
        )));
    let body = json!({"model": "gpt-test-1", "stream": true, "input": "hi"});
    let resp = bridge
        .post("/openai/v1/responses", &[AUTH], body.to_string())
        .await;
    let events = visible_data(&timed_events(resp).await);
    // The injected call's events are hidden; the client sees the start and then the error.
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(
        events[1],
        json!({"type": "error", "code": "upstream_incomplete",
               "message": "the upstream stream ended before response.completed",
               "param": null, "sequence_number": 1})
    );
}
