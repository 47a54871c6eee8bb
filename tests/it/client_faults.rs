//! Client faults and bad input: a client that leaves mid-stream (plain relay and tool loop),
//! bodies that are too large or malformed, unknown routes, and many concurrent streams.

use std::sync::Arc;
use std::time::Duration;

use aibridge::config::Limits;
use aibridge::intercept::tool_loop::ToolSource;
use aibridge::mcp::{RawMcpConfig, RawMcpServer, ToolRegistry, validate};
use aibridge::record::Outcome;
use futures_util::StreamExt;
use mock_upstream::MockResponse;
use serde_json::{Value, json};

use crate::records_of_kind;
use crate::support::{Setup, TestBridge, interception_id};

const MESSAGES: &str = "/anthropic/v1/messages";

fn body(prompt: &str, stream: bool) -> String {
    json!({
        "model": "claude-test-1",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}]
    })
    .to_string()
}

#[tokio::test]
async fn a_client_leaving_mid_stream_ends_the_interception_with_its_usage() {
    let bridge = TestBridge::start().await;
    bridge.mock.enqueue(MockResponse::sse_with_delay(
        mock_upstream::fixture("anthropic/simple_text.sse"),
        Duration::from_millis(300),
    ));
    let resp = bridge.post(MESSAGES, &[], body("hi", true)).await;
    let id = interception_id(&resp);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"event: message_start"));
    drop(stream);
    let records = bridge.records_of(id).await;
    let ended = records_of_kind!(records, InterceptionEnded);
    assert_eq!(ended[0].outcome, Outcome::ClientDisconnected);
    let usage = records_of_kind!(records, TokenUsage);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].input_tokens, 25);
    assert_eq!(records_of_kind!(records, Prompt)[0].prompt, "hi");
}

/// A client that hangs up as soon as it has the API's last event, while the upstream has not
/// closed its body yet (Codex does this on `response.completed`), had the whole answer: the
/// interception is completed, not disconnected. Before that event, leaving is a disconnect.
#[tokio::test]
async fn a_client_leaving_after_the_last_event_completed_its_request() {
    let cases = [
        (MESSAGES, "anthropic/simple_text.sse", "message_stop"),
        (
            "/openai/v1/chat/completions",
            "openai-chat/simple_text.sse",
            "[DONE]",
        ),
        (
            "/openai/v1/responses",
            "openai-responses/simple_text.sse",
            "response.completed",
        ),
    ];
    let bridge = TestBridge::start().await;
    for (path, fixture, last) in cases {
        // Every event at once, then the upstream holds the body open for a while.
        let mut chunks: Vec<(Duration, bytes::Bytes)> =
            mock_upstream::split_sse_events(&mock_upstream::fixture(fixture))
                .into_iter()
                .map(|event| (Duration::ZERO, event))
                .collect();
        chunks.push((
            Duration::from_secs(3),
            bytes::Bytes::from_static(b": bye\n\n"),
        ));
        let mut response = MockResponse::sse(mock_upstream::fixture(fixture));
        response.body = mock_upstream::MockBody::Chunks(chunks);
        bridge.mock.enqueue(response);
        let body = json!({"model": "m-1", "max_tokens": 16, "stream": true,
            "input": "hi", "messages": [{"role": "user", "content": "hi"}]})
        .to_string();
        let resp = bridge.post(path, &[], body).await;
        assert_eq!(resp.status(), 200, "{path}");
        let id = interception_id(&resp);
        let mut stream = resp.bytes_stream();
        let mut seen = String::new();
        while !seen.contains(last) {
            let chunk = stream.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        drop(stream);
        let records = bridge.records_of(id).await;
        let ended = records_of_kind!(records, InterceptionEnded);
        assert_eq!(ended[0].outcome, Outcome::Completed, "{path}");
        assert_eq!(records_of_kind!(records, TokenUsage).len(), 1, "{path}");
    }
}

#[tokio::test]
async fn a_client_leaving_during_a_tool_call_cancels_the_tool_loop() {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let config = validate(
        RawMcpConfig {
            max_loop_iterations: Some(4),
            keepalive_interval: None,
            servers: vec![RawMcpServer {
                name: "test".into(),
                url: Some(server.url()),
                call_timeout: Some("120s".into()),
                ..Default::default()
            }],
        },
        &|_| None,
    )
    .unwrap();
    let registry = ToolRegistry::start(&config, None);
    registry.wait_ready(Duration::from_secs(10)).await;
    let bridge = TestBridge::start_with(Setup {
        tools: Some(registry as Arc<dyn ToolSource>),
        ..Default::default()
    })
    .await;
    let prompt = r#"[[text-then-tool:bmcp_test_slow {"ms": 60000}]]"#;
    let resp = bridge.post(MESSAGES, &[], body(prompt, true)).await;
    assert_eq!(resp.status(), 200);
    let id = interception_id(&resp);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }
    drop(stream);
    // The slow call would take a minute; the interception ends as soon as the client left.
    let records = bridge.records_of(id).await;
    let ended = records_of_kind!(records, InterceptionEnded);
    assert_eq!(ended[0].outcome, Outcome::ClientDisconnected);
    assert_eq!(records_of_kind!(records, TokenUsage).len(), 1);
    assert!(records_of_kind!(records, ToolUsage).is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_recorded_and_the_bridge_keeps_serving() {
    let bridge = TestBridge::start_with(Setup {
        limits: Limits {
            max_body_bytes: 4096,
            ..Limits::default()
        },
        ..Default::default()
    })
    .await;
    let huge = body(&"x".repeat(8192), false);
    let cases: [(&str, String, u16, &str); 4] = [
        ("too large", huge, 413, "request_too_large"),
        (
            "not json",
            "{\"model\": ".into(),
            400,
            "invalid_request_error",
        ),
        (
            "no model",
            json!({"messages": []}).to_string(),
            400,
            "invalid_request_error",
        ),
        (
            "stream not a bool",
            json!({"model": "claude-x", "stream": "yes", "messages": []}).to_string(),
            400,
            "invalid_request_error",
        ),
    ];
    for (case, payload, status, kind) in cases {
        let resp = bridge.post(MESSAGES, &[], payload).await;
        assert_eq!(resp.status(), status, "{case}");
        let id = interception_id(&resp);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            (v["type"].as_str(), v["error"]["type"].as_str()),
            (Some("error"), Some(kind)),
            "{case}"
        );
        let records = bridge.records_of(id).await;
        let started = records_of_kind!(records, Interception);
        assert_eq!(started[0].initiator_id, "local", "{case}");
        let ended = records_of_kind!(records, InterceptionEnded);
        assert_eq!(
            (ended[0].outcome, ended[0].attempts),
            (Outcome::Rejected, 0),
            "{case}"
        );
        if case == "stream not a bool" {
            assert_eq!(started[0].model, "claude-x");
        }
    }
    let resp = bridge
        .http
        .get(format!("{}/nowhere", bridge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(bridge.mock.requests().is_empty());
    let m = bridge.metrics().await;
    for (reason, n) in [("too_large", 1), ("invalid_body", 3)] {
        let line = format!(
            "aibridge_rejected_requests_total{{provider=\"anthropic\",reason=\"{reason}\"}} {n}"
        );
        assert!(m.contains(&line), "{line}\n{m}");
    }
    assert!(
        m.contains("aibridge_rejected_requests_total{provider=\"none\",reason=\"not_found\"} 1")
    );
    let resp = bridge.post(MESSAGES, &[], body("still here", false)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn two_hundred_concurrent_streams_complete() {
    let bridge = Arc::new(TestBridge::start().await);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let bridge = bridge.clone();
            tokio::spawn(async move {
                let resp = bridge
                    .post(MESSAGES, &[], body(&format!("n{i}"), true))
                    .await;
                assert_eq!(resp.status(), 200);
                let id = interception_id(&resp);
                let text = resp.text().await.unwrap();
                assert!(
                    text.trim_end().ends_with(r#"{"type":"message_stop"}"#),
                    "{text}"
                );
                id
            })
        })
        .collect();
    for task in tasks {
        let id = task.await.unwrap();
        let ended = records_of_kind!(bridge.records_of(id).await, InterceptionEnded);
        assert_eq!(ended[0].outcome, Outcome::Completed);
    }
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024
}

/// Waits (at most 30 s) for a log line containing `needle`.
async fn wait_for_log_line(served: &crate::support::binary::Served, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(line) = served.logs().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {needle:?} in the logs:\n{}",
            served.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `key=` in a text log line.
fn field<'l>(line: &'l str, key: &str) -> &'l str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|w| w.strip_prefix('=')))
        .map(|v| v.trim_matches('"'))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// 256 events of 1 MiB: far more than the socket buffers between the bridge and a client.
fn huge_stream() -> (MockResponse, bytes::Bytes, usize) {
    let mut event = b"event: ping\ndata: ".to_vec();
    event.resize(1024 * 1024 - 2, b'a');
    event.extend_from_slice(b"\n\n");
    let event = bytes::Bytes::from(event);
    let count = 256;
    let mut resp = MockResponse::sse("");
    resp.body = mock_upstream::MockBody::Chunks(
        (0..count)
            .map(|_| (Duration::ZERO, event.clone()))
            .collect(),
    );
    (resp, event, count)
}

/// A client that stops reading holds the upstream back: 256 MiB pass through the built
/// binary while its peak memory stays far below that, and the slow client is logged while
/// it is still connected and still reads nothing.
#[tokio::test]
async fn a_slow_client_is_logged_and_never_makes_the_bridge_buffer() {
    let mock = mock_upstream::MockUpstream::start().await;
    let (resp, event, count) = huge_stream();
    mock.enqueue(resp);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"log\"\nlog = \"warn\"\n\
         [limits]\nslow_client_after = \"1s\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let mut served = crate::support::binary::Served::start(dir.path(), &config, &[]);
    let resp = reqwest::Client::new()
        .post(format!("{}{MESSAGES}", served.url))
        .header("content-type", "application/json")
        .header("user-agent", "claude-cli/2.1.0 (external, cli)")
        .body(body("big", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The client reads nothing until the bridge has told who it is.
    let line = wait_for_log_line(&served, "slow client").await;
    assert_eq!(field(&line, "actor"), "local", "{line}");
    assert_eq!(field(&line, "client"), "claude-code", "{line}");
    let pending: usize = field(&line, "bytes_pending").parse().unwrap();
    // At least the event handed to the connection and not taken.
    assert!(pending >= event.len(), "{line}");
    let mut total = 0usize;
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, count * event.len());
    let peak = peak_rss_mib(served.child.id());
    eprintln!("slow client, 256 MiB stream: bridge peak RSS {peak} MiB");
    assert!(peak < 128, "peak RSS {peak} MiB for a 256 MiB stream");
    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
    // Logged once per stream.
    assert_eq!(served.logs().matches("slow client").count(), 1);
}

/// A text answer of `count` deltas of `size` bytes each (Anthropic Messages SSE).
fn huge_text_answer(count: usize, size: usize) -> (MockResponse, usize) {
    let event =
        |name: &str, data: Value| bytes::Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let delta = event(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "b".repeat(size)}}),
    );
    let mut chunks = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_big", "type": "message",
                "role": "assistant", "model": "claude-s", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    chunks.extend(std::iter::repeat_n(delta.clone(), count));
    chunks.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    chunks.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": count + 1}}),
    ));
    chunks.push(event("message_stop", json!({"type": "message_stop"})));
    let mut resp = MockResponse::sse("");
    resp.body =
        mock_upstream::MockBody::Chunks(chunks.into_iter().map(|c| (Duration::ZERO, c)).collect());
    (resp, delta.len())
}

/// The same through the tool loop (its stream task writes into a bounded channel): the
/// upstream first asks for an injected tool, then answers with 64 MiB of text that the
/// client does not read until the bridge has logged it as slow.
#[tokio::test]
async fn a_slow_client_of_the_tool_loop_is_logged_while_connected() {
    let mock = mock_upstream::MockUpstream::start().await;
    let tool_call = String::from_utf8(mock_upstream::fixture("anthropic/tool_use.sse").to_vec())
        .unwrap()
        .replace("get_weather", "bmcp_s_echo");
    mock.enqueue(MockResponse::sse(tool_call));
    let (answer, delta_len) = huge_text_answer(256, 256 * 1024);
    mock.enqueue(answer);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"log\"\nlog = \"warn\"\n\
         [limits]\nslow_client_after = \"1s\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         [[mcp.servers]]\nname = \"s\"\ncommand = \"{}\"\n",
        mock.url(),
        crate::mcp_registry::test_server_binary().display()
    );
    let mut served = crate::support::binary::Served::start(dir.path(), &config, &[]);
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http
        .get(format!("{}/readyz", served.url))
        .send()
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = http
        .post(format!("{}{MESSAGES}", served.url))
        .header("content-type", "application/json")
        .header("user-agent", "claude-cli/2.1.0 (external, cli)")
        .body(body("weather?", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = interception_id(&resp);
    let line = wait_for_log_line(&served, "slow client").await;
    assert_eq!(field(&line, "interception"), id.to_string(), "{line}");
    assert_eq!(field(&line, "actor"), "local", "{line}");
    assert_eq!(field(&line, "client"), "claude-code", "{line}");
    let pending: usize = field(&line, "bytes_pending").parse().unwrap();
    assert!(pending >= delta_len, "{line}");
    // The loop ran: the tool result went back upstream before the big answer.
    assert_eq!(mock.requests().len(), 2);
    let text = resp.text().await.unwrap();
    assert!(
        text.trim_end().ends_with(r#"{"type":"message_stop"}"#),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert_eq!(text.matches("\"text_delta\"").count(), 256 + 3);
    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
    assert_eq!(served.logs().matches("slow client").count(), 1);
}
