//! OpenAI Responses through the bridge: scripted upstream answers, the exact bytes the
//! client and the upstream see, and the exact records.

use mock_upstream::MockResponse;
use serde_json::{Value, json};

use crate::openai_chat::{
    AUTH, cut_after, ended, interception, prompt, records, thought, tool, usage,
};
use crate::support::TestBridge;

const PATH: &str = "/openai/v1/responses";
const RESP: &str = "resp_1";

fn response(status: &str, output: Value, usage: Value) -> Value {
    json!({"id": RESP, "object": "response", "created_at": 1767225600, "status": status,
        "error": null, "incomplete_details": null, "instructions": null, "model": "gpt-5",
        "output": output, "parallel_tool_calls": true, "previous_response_id": null,
        "tool_choice": "auto", "tools": [], "usage": usage})
}

fn full_usage() -> Value {
    json!({"input_tokens": 50, "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}, "total_tokens": 59})
}

fn usage_record() -> Value {
    usage(
        RESP,
        10,
        9,
        40,
        json!({"reasoning_tokens": 4, "total_tokens": 59}),
    )
}

fn message(id: &str, text: &str, phase: Option<&str>) -> Value {
    let mut m = json!({"id": id, "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    if let Some(phase) = phase {
        m["phase"] = json!(phase);
    }
    m
}

fn function_call(id: &str, call: &str, name: &str, args: &str) -> Value {
    json!({"id": id, "type": "function_call", "status": "completed", "call_id": call,
        "name": name, "arguments": args})
}

fn custom_call(call: &str, input: &str) -> Value {
    json!({"id": "ctc_1", "type": "custom_tool_call", "status": "completed", "call_id": call,
        "name": "apply_patch", "input": input})
}

fn reasoning(summary: &[&str]) -> Value {
    let parts: Vec<Value> = summary
        .iter()
        .map(|t| json!({"type": "summary_text", "text": t}))
        .collect();
    json!({"id": "rs_1", "type": "reasoning", "summary": parts, "encrypted_content": "ZW5j"})
}

fn web_search() -> Value {
    json!({"id": "ws_1", "type": "web_search_call", "status": "completed",
        "action": {"type": "search", "query": "paris weather"}})
}

/// Events numbered in order, each as `event:` + `data:` with `type` and `sequence_number`.
fn sse(events: &[(&str, Value)]) -> String {
    events
        .iter()
        .enumerate()
        .map(|(n, (kind, data))| {
            let mut data = data.clone();
            data["type"] = json!(kind);
            data["sequence_number"] = json!(n);
            format!("event: {kind}\ndata: {data}\n\n")
        })
        .collect()
}

fn created() -> Vec<(&'static str, Value)> {
    let r = response("in_progress", json!([]), Value::Null);
    vec![
        ("response.created", json!({"response": r})),
        ("response.in_progress", json!({"response": r})),
    ]
}

/// The events that stream one output item (text deltas for a message).
fn item_events(index: usize, item: &Value) -> Vec<(&'static str, Value)> {
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    let mut out = vec![(
        "response.output_item.added",
        json!({"output_index": index, "item": added}),
    )];
    let id = item["id"].clone();
    match item["type"].as_str() {
        Some("message") => {
            let text = item["content"][0]["text"].as_str().unwrap().to_owned();
            let (a, b) = text.split_at(text.len() / 2);
            let at = json!({"item_id": id, "output_index": index, "content_index": 0});
            let with = |extra: Value| {
                let mut v = at.clone();
                v.as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().unwrap().clone());
                v
            };
            out.push((
                "response.content_part.added",
                with(json!({"part": {"type": "output_text", "text": "", "annotations": []}})),
            ));
            out.push((
                "response.output_text.delta",
                with(json!({"delta": a, "logprobs": []})),
            ));
            out.push((
                "response.output_text.delta",
                with(json!({"delta": b, "logprobs": []})),
            ));
            out.push((
                "response.output_text.done",
                with(json!({"text": text, "logprobs": []})),
            ));
            out.push((
                "response.content_part.done",
                with(json!({"part": item["content"][0]})),
            ));
        }
        Some("function_call") => {
            let args = item["arguments"].clone();
            out.push((
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": args}),
            ));
            out.push((
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "arguments": args}),
            ));
        }
        _ => {}
    }
    out.push((
        "response.output_item.done",
        json!({"output_index": index, "item": item}),
    ));
    out
}

/// A whole successful stream producing `items`.
fn stream_of(items: &[Value]) -> String {
    let mut events = created();
    for (i, item) in items.iter().enumerate() {
        events.extend(item_events(i, item));
    }
    events.push((
        "response.completed",
        json!({"response": response("completed", Value::Array(items.to_vec()), full_usage())}),
    ));
    sse(&events)
}

fn request(stream: bool, extra: Value) -> String {
    let mut b = json!({"model": "gpt-5", "input": [
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather in"},
            {"type": "input_image", "image_url": "data:,"}, {"type": "input_text", "text": "Paris?"}]}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
            {"type": "web_search"}]});
    if stream {
        b["stream"] = json!(true);
    }
    b.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    b.to_string()
}

const PROMPT: &str = "weather in\nParis?";

async fn post(bridge: &TestBridge, body: &str) -> reqwest::Response {
    bridge.post(PATH, &[AUTH], body.to_owned()).await
}

#[tokio::test]
async fn blocking_text_with_string_input_and_previous_response() {
    let bridge = TestBridge::start().await;
    let answer = response(
        "completed",
        json!([message("msg_1", "Sunny.", None)]),
        full_usage(),
    )
    .to_string();
    bridge.mock.enqueue(MockResponse::json(200, answer.clone()));
    let sent = r#"{"model":"gpt-5","input":"weather?","previous_response_id":"resp_0","conversation":{"id":"conv_1"},"store":true}"#;
    let resp = post(&bridge, sent).await;
    assert_eq!(resp.status(), 200);
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), answer);
    let upstream = &bridge.mock.requests()[0];
    assert_eq!(upstream.path_and_query, "/v1/responses");
    assert_eq!(upstream.body, sent.as_bytes());
    assert_eq!(
        recs,
        vec![
            interception(
                "responses",
                false,
                json!({"metadata": {"previous_response_id": "resp_0", "conversation": {"id": "conv_1"}}})
            ),
            prompt(RESP, "weather?"),
            usage_record(),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn streaming_text_is_relayed_byte_for_byte() {
    let bridge = TestBridge::start().await;
    let transcript = stream_of(&[message("msg_1", "Sunny today.", None)]);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let sent = request(true, json!({"previous_response_id": "resp_0"}));
    let resp = post(&bridge, &sent).await;
    assert_eq!(resp.status(), 200);
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(bridge.mock.requests()[0].body, sent.as_bytes());
    assert_eq!(
        recs,
        vec![
            interception(
                "responses",
                true,
                json!({"metadata": {"previous_response_id": "resp_0"}})
            ),
            prompt(RESP, PROMPT),
            usage_record(),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn streaming_tool_calls_reasoning_and_commentary() {
    let bridge = TestBridge::start().await;
    let items = [
        reasoning(&["Need the weather.", "Two cities."]),
        message("msg_c", "Checking both cities.", Some("commentary")),
        function_call("fc_1", "call_a", "get_weather", r#"{"city":"Paris"}"#),
        function_call("fc_2", "call_b", "get_weather", r#"{"city":"Lyon"}"#),
        web_search(),
        custom_call("call_c", "*** Begin Patch\n*** End Patch"),
    ];
    let transcript = stream_of(&items);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &request(true, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(recs, tool_records(true));
}

#[tokio::test]
async fn blocking_tool_calls_reasoning_and_commentary() {
    let bridge = TestBridge::start().await;
    let items = json!([
        reasoning(&["Need the weather.", "Two cities."]),
        message("msg_c", "Checking both cities.", Some("commentary")),
        function_call("fc_1", "call_a", "get_weather", r#"{"city":"Paris"}"#),
        function_call("fc_2", "call_b", "get_weather", r#"{"city":"Lyon"}"#),
        web_search(),
        custom_call("call_c", "*** Begin Patch\n*** End Patch"),
        message("msg_f", "Done.", Some("final_answer")),
    ]);
    let answer = response("completed", items, full_usage()).to_string();
    bridge.mock.enqueue(MockResponse::json(200, answer.clone()));
    let resp = post(&bridge, &request(false, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), answer);
    assert_eq!(recs, tool_records(false));
}

fn tool_records(streaming: bool) -> Vec<Value> {
    vec![
        interception("responses", streaming, json!({})),
        prompt(RESP, PROMPT),
        usage_record(),
        tool(
            RESP,
            "call_a",
            "get_weather",
            json!({"city": "Paris"}),
            json!({}),
        ),
        tool(
            RESP,
            "call_b",
            "get_weather",
            json!({"city": "Lyon"}),
            json!({}),
        ),
        tool(
            RESP,
            "ws_1",
            "web_search",
            json!({"type": "search", "query": "paris weather"}),
            json!({"type": "web_search_call"}),
        ),
        tool(
            RESP,
            "call_c",
            "apply_patch",
            json!("*** Begin Patch\n*** End Patch"),
            json!({"type": "custom_tool_call"}),
        ),
        thought("Need the weather.", "reasoning_summary"),
        thought("Two cities.", "reasoning_summary"),
        thought("Checking both cities.", "commentary"),
        ended("completed", 200, json!({})),
    ]
}

#[tokio::test]
async fn upstream_401_and_429_are_relayed_with_their_bodies() {
    let bridge = TestBridge::start().await;
    for (status, stream) in [(401, false), (401, true), (429, false), (429, true)] {
        let error = json!({"error": {"message": format!("status {status}"), "type": "invalid_request_error", "param": null, "code": "x"}}).to_string();
        bridge
            .mock
            .enqueue(MockResponse::json(status, error.clone()));
        let resp = post(&bridge, &request(stream, json!({}))).await;
        assert_eq!(resp.status().as_u16(), status);
        let recs = records(&bridge, &resp).await;
        assert_eq!(resp.text().await.unwrap(), error);
        assert_eq!(
            recs,
            vec![
                interception("responses", stream, json!({})),
                prompt("", PROMPT),
                ended("upstream_error", status, json!({"error": error})),
            ],
            "status {status} stream={stream}"
        );
    }
}

#[tokio::test]
async fn upstream_5xx_before_the_stream_is_relayed() {
    let bridge = TestBridge::start().await;
    for stream in [false, true] {
        let error = r#"{"error":{"message":"upstream broke","type":"server_error","param":null,"code":null}}"#;
        bridge.mock.enqueue(MockResponse::json(502, error));
        let resp = post(&bridge, &request(stream, json!({}))).await;
        assert_eq!(resp.status(), 502);
        let recs = records(&bridge, &resp).await;
        assert_eq!(resp.text().await.unwrap(), error);
        assert_eq!(
            recs,
            vec![
                interception("responses", stream, json!({})),
                prompt("", PROMPT),
                ended("upstream_error", 502, json!({"error": error})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn error_event_mid_stream_reaches_the_client() {
    let bridge = TestBridge::start().await;
    let mut events = created();
    events.push((
        "error",
        json!({"code": "server_error", "message": "The model crashed", "param": null}),
    ));
    let transcript = sse(&events);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &request(true, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("responses", true, json!({})),
            prompt(RESP, PROMPT),
            ended(
                "upstream_error",
                200,
                json!({"error": "server_error: The model crashed"})
            ),
        ]
    );
}

#[tokio::test]
async fn response_failed_mid_stream_is_recorded_with_its_usage() {
    let bridge = TestBridge::start().await;
    let mut events = created();
    let mut failed = response("failed", json!([]), full_usage());
    failed["error"] = json!({"code": "rate_limit_exceeded", "message": "Too many tokens"});
    events.push(("response.failed", json!({"response": failed})));
    let transcript = sse(&events);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &request(true, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("responses", true, json!({})),
            prompt(RESP, PROMPT),
            usage_record(),
            ended(
                "upstream_error",
                200,
                json!({"error": "rate_limit_exceeded: Too many tokens"})
            ),
        ]
    );
}

#[tokio::test]
async fn malformed_sse_lines_are_relayed_as_received() {
    let bridge = TestBridge::start().await;
    let good = stream_of(&[message("msg_1", "ok", None)]);
    let transcript = format!(
        ": keep-alive\n\nevent: response.output_item.done\ndata: {{broken\n\nno field here\n\ndata: [\"no event line\"]\n\n{good}"
    );
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &request(true, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("responses", true, json!({})),
            prompt(RESP, PROMPT),
            usage_record(),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn background_is_refused_before_anything_goes_upstream() {
    let bridge = TestBridge::start().await;
    let resp = post(&bridge, &request(false, json!({"background": true}))).await;
    assert_eq!(resp.status(), 400);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("background:"),
        "{v}"
    );
    assert_eq!(
        v["error"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["message", "type", "param", "code"]
    );
    assert!(bridge.mock.requests().is_empty());
    crate::support::assert_only_rejections(&bridge.recorder.records());
}

#[tokio::test]
async fn a_json_array_body_is_refused_before_anything_goes_upstream() {
    let bridge = TestBridge::start().await;
    let resp = post(&bridge, r#"["gpt-5", "hi"]"#).await;
    assert_eq!(resp.status(), 400);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "request body must be a JSON object",
            "type": "invalid_request_error", "param": null, "code": null}})
    );
    assert!(bridge.mock.requests().is_empty());
    crate::support::assert_only_rejections(&bridge.recorder.records());
}

/// Codex's second turn, as captured, plus a `namespace` tool and a reasoning item without
/// an id: everything reaches the upstream byte for byte, headers included.
#[tokio::test]
async fn codex_body_and_headers_are_forwarded_untouched() {
    let bridge = TestBridge::start().await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/captures/codex/exec-command-2.json"
    );
    let capture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut body = capture["body"].clone();
    let reasoning_item = body["input"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["type"] == "reasoning")
        .unwrap();
    reasoning_item.as_object_mut().unwrap().remove("id");
    body["tools"].as_array_mut().unwrap().push(
        json!({"type": "namespace", "name": "multi_agent_v1",
        "description": "agents", "tools": [{"type": "function", "name": "spawn", "strict": false,
        "parameters": {"type": "object", "properties": {}}}]}),
    );
    let sent = serde_json::to_string_pretty(&body).unwrap();
    assert!(sent.contains("\"custom\"") && sent.contains("\"tool_search\""));

    let transcript = stream_of(&[message("msg_1", "Tool result: hi-from-codex", None)]);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let ua = "codex_exec/0.169.0 (Debian 12.0.0; x86_64) unknown (codex_exec; 0.169.0)";
    let headers = [
        AUTH,
        ("originator", "codex_exec"),
        ("user-agent", ua),
        ("session-id", "01a20180-5468-7be1-8d88-1131677e8070"),
        ("openai-organization", "org-1"),
        ("openai-project", "proj-1"),
        ("x-codex-window-id", "w:0"),
        ("accept", "text/event-stream"),
    ];
    let resp = bridge.post(PATH, &headers, sent.clone()).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    let upstream = &bridge.mock.requests()[0];
    assert_eq!(upstream.body, sent.as_bytes());
    for (name, value) in &headers {
        assert_eq!(upstream.header(name), Some(*value), "{name}");
    }
    assert_eq!(
        recs,
        vec![
            interception(
                "responses",
                true,
                json!({"model": "gpt-5.5", "client": "codex",
                "user_agent": ua, "client_session_id": "01a20180-5468-7be1-8d88-1131677e8070"})
            ),
            usage_record(),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn a_broken_stream_ends_with_a_responses_error_event() {
    let bridge = TestBridge::start().await;
    let first = sse(&created());
    bridge.mock.enqueue(cut_after(std::slice::from_ref(&first)));
    let resp = post(&bridge, &request(true, json!({}))).await;
    let recs = records(&bridge, &resp).await;
    let text = resp.text().await.unwrap();
    let tail = text
        .strip_prefix(&first)
        .expect("the events before the break");
    let data = tail
        .strip_prefix("event: error\ndata: ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream stream broke off"),
        "{message}"
    );
    assert_eq!(
        event,
        json!({"type": "error", "code": "upstream_error", "message": message, "param": null,
            "error": {"message": message, "type": "server_error", "param": null, "code": "upstream_error"}})
    );
    assert_eq!(
        recs,
        vec![
            interception("responses", true, json!({})),
            prompt(RESP, PROMPT),
            ended("upstream_unavailable", 200, json!({"error": message})),
        ]
    );
}
