//! Smart and scripted mode over real HTTP on 127.0.0.1:0.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{MockBody, MockResponse, MockUpstream};

async fn post(mock: &MockUpstream, path: &str, body: Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", mock.url()))
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The `data:` payloads of an SSE transcript, parsed (`[DONE]` is skipped).
fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn anthropic_directive_makes_a_tool_call() {
    let mock = MockUpstream::start().await;
    let request = json!({
        "model": "claude-x", "max_tokens": 100,
        "tools": [{"name": "get_time", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "what time? [[tool:get_time {\"tz\":\"UTC\"}]]"}]
    });
    let (status, body) = post(&mock, "/v1/messages", request.clone()).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["content"][0]["type"], "tool_use");
    assert_eq!(body["content"][0]["input"], json!({"tz": "UTC"}));
    assert_eq!(body["usage"]["input_tokens"], 11);
    assert_eq!(body["usage"]["output_tokens"], 3);

    let mut streaming = request;
    streaming["stream"] = json!(true);
    let (_, text) = post(&mock, "/v1/messages", streaming).await;
    let events = sse_data(&text);
    let json: String = events
        .iter()
        .filter_map(|e| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(json, r#"{"tz":"UTC"}"#);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 3);
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
}

#[tokio::test]
async fn chat_tool_result_is_quoted_and_usage_chunk_is_optional() {
    let mock = MockUpstream::start().await;
    let messages = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]);
    let (_, body) = post(
        &mock,
        "/v1/chat/completions",
        json!({"model": "m", "messages": messages}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Tool result: sunny"
    );
    assert_eq!(body["usage"]["prompt_tokens"], 13);
    assert_eq!(body["usage"]["completion_tokens"], 5);

    let request = json!({"model": "m", "stream": true, "messages": messages});
    let (_, text) = post(&mock, "/v1/chat/completions", request).await;
    assert!(sse_data(&text).iter().all(|c| c.get("usage").is_none()));
    assert!(text.ends_with("data: [DONE]\n\n"));

    let request = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": messages});
    let (_, text) = post(&mock, "/v1/chat/completions", request).await;
    let chunks = sse_data(&text);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 18);
}

#[tokio::test]
async fn responses_events_are_numbered_and_complete() {
    let mock = MockUpstream::start().await;
    let request = json!({
        "model": "gpt", "stream": true,
        "tools": [{"type": "function", "name": "f", "parameters": {}}],
        "input": "[[thinking]] [[text-then-tool:f]] [[cached:4]]"
    });
    let (_, text) = post(&mock, "/v1/responses", request).await;
    let events = sse_data(&text);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    let kinds: Vec<&str> = done["response"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["reasoning", "message", "function_call"]);
    let usage = &done["response"]["usage"];
    assert_eq!(usage["input_tokens"], 15);
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(usage["output_tokens"], 9);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 2);
}

#[tokio::test]
async fn status_directive_and_unknown_route_speak_the_provider_format() {
    let mock = MockUpstream::start().await;
    let request = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "[[status:429]]"}]});
    let (status, body) = post(&mock, "/v1/messages", request).await;
    assert_eq!(status, 429);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "rate_limit_error"
    );
    let (status, body) = post(&mock, "/v1/nothing", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["type"],
        "error"
    );
    let (status, body) = post(
        &mock,
        "/v1/messages/count_tokens",
        json!({"messages": [{}, {}]}),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"input_tokens":12}"#));
}

#[tokio::test]
async fn scripted_responses_are_consumed_in_order_and_requests_recorded() {
    let mock = MockUpstream::start().await;
    mock.enqueue(MockResponse::json(500, r#"{"error":"first"}"#));
    mock.enqueue(MockResponse::sse(
        "event: a\ndata: {}\n\nevent: b\ndata: {}\n\n",
    ));
    let (status, body) = post(&mock, "/v1/chat/completions", json!({"n": 1})).await;
    assert_eq!((status, body.as_str()), (500, r#"{"error":"first"}"#));
    // count_tokens is not a model route: it does not consume the queue.
    post(&mock, "/v1/messages/count_tokens", json!({})).await;
    let (_, body) = post(&mock, "/v1/v1/responses", json!({})).await;
    assert_eq!(body, "event: a\ndata: {}\n\nevent: b\ndata: {}\n\n");
    let requests = mock.wait_for_requests(3, Duration::from_secs(5)).await;
    let paths: Vec<&str> = requests.iter().map(|r| r.path_and_query.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/v1/chat/completions",
            "/v1/messages/count_tokens",
            "/v1/v1/responses"
        ]
    );
    assert_eq!(requests[0].json(), json!({"n": 1}));
    assert_eq!(mock.queued(), 0);
}

#[tokio::test]
async fn faults_break_the_transport() {
    let mock = MockUpstream::start().await;
    mock.enqueue(MockResponse::fault(MockBody::ResetBeforeHeaders));
    mock.enqueue(MockResponse {
        status: 200,
        headers: vec![],
        body: MockBody::CutAfter(vec![(Duration::ZERO, "data: {}\n\n".into())]),
    });
    let client = reqwest::Client::new();
    let url = format!("{}/v1/messages", mock.url());
    assert!(client.post(&url).body("{}").send().await.is_err());
    let mut resp = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.chunk().await.unwrap().unwrap(), "data: {}\n\n");
    assert!(resp.chunk().await.is_err());
}

/// Real client requests (captured from Claude Code and Codex) get the expected answers.
#[tokio::test]
async fn captured_client_requests_are_understood() {
    let mock = MockUpstream::start().await;
    let cases = [
        (
            "captures/claude-code/plain-api-key.json",
            "Mock answer: say hi",
        ),
        (
            "captures/claude-code/bash-tool-2.json",
            "Tool result: hi-from-bash",
        ),
        ("captures/codex/plain.json", "Mock answer: say hi"),
    ];
    for (capture, expected) in cases {
        let capture: Value = serde_json::from_slice(&crate::fixture(capture)).unwrap();
        let mut body = capture["body"].clone();
        body["stream"] = json!(false);
        let (status, text) = post(&mock, capture["path"].as_str().unwrap(), body).await;
        assert_eq!(status, 200, "{text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let got = answer
            .pointer("/content/0/text")
            .or_else(|| answer.pointer("/output/0/content/0/text"))
            .unwrap();
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn path_queues_script_any_route_first() {
    let mock = MockUpstream::start().await;
    mock.enqueue_for_path("/v1/models", MockResponse::json(503, "{}"));
    mock.enqueue(MockResponse::json(500, json!({"error": "x"})));
    let client = reqwest::Client::new();
    let models = client
        .get(format!("{}/v1/models", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 503);
    let models = client
        .get(format!("{}/v1/models", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        models.status(),
        200,
        "the path queue is used up; smart mode again"
    );
    assert_eq!(mock.queued(), 1, "the model-route queue was not touched");
    assert_eq!(mock.take_requests().len(), 2);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn a_required_key_refuses_every_other_key_in_the_providers_format() {
    let mock = MockUpstream::start_with(crate::MockOptions {
        required_key: Some("sk-right".into()),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let messages = json!({"model": "claude-x", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let chat = json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        ("/v1/messages", "x-api-key", "sk-wrong", &messages, 401),
        ("/v1/messages", "x-api-key", "sk-right", &messages, 200),
        (
            "/v1/chat/completions",
            "authorization",
            "Bearer sk-wrong",
            &chat,
            401,
        ),
        (
            "/v1/chat/completions",
            "authorization",
            "Bearer sk-right",
            &chat,
            200,
        ),
        ("/v1/chat/completions", "x-other", "sk-right", &chat, 401),
    ];
    for (path, header, value, body, want) in cases {
        let resp = http
            .post(format!("{}{path}", mock.url()))
            .header(header, value)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), want, "{path} {header}: {value}");
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        if want == 401 && path == "/v1/messages" {
            assert_eq!(v["error"]["type"], "authentication_error", "{v}");
        } else if want == 401 {
            assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
        }
    }
}
