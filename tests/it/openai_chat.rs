//! OpenAI Chat Completions through the bridge: scripted upstream answers, the exact bytes
//! the client and the upstream see, and the exact records.

use aibridge::record::Record;
use mock_upstream::MockResponse;
use serde_json::{Value, json};

use crate::support::{Setup, TestBridge, interception_id};

/// The masked hint of the client's own key (bring-your-own-key mode), sent as [`AUTH`].
pub(crate) const KEY_HINT: &str = "sk-c…cdef";
const PATH: &str = "/openai/v1/chat/completions";

/// Records as JSON without ids and timestamps, which differ per run.
pub(crate) fn normalized(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in [
                "id",
                "interception_id",
                "created_at",
                "started_at",
                "ended_at",
            ] {
                o.remove(k);
            }
            v
        })
        .collect()
}

fn merged(mut base: Value, overrides: Value) -> Value {
    if let (Some(b), Value::Object(o)) = (base.as_object_mut(), overrides) {
        b.extend(o);
    }
    base
}

/// The interception record of a single-user, bring-your-own-key request.
pub(crate) fn interception(api: &str, streaming: bool, overrides: Value) -> Value {
    let base = json!({"kind": "interception", "initiator_id": "local", "provider": "openai",
        "provider_name": "openai", "api": api, "model": "gpt-5", "client": "unknown",
        "user_agent": null, "client_session_id": null, "credential_kind": "byok",
        "credential_hint": KEY_HINT, "streaming": streaming, "metadata": {}});
    merged(base, overrides)
}

pub(crate) fn ended(outcome: &str, status: u16, metadata: Value) -> Value {
    json!({"kind": "interception_ended", "outcome": outcome, "upstream_status": status,
        "attempts": 1, "metadata": metadata})
}

pub(crate) fn prompt(response_id: &str, text: &str) -> Value {
    json!({"kind": "prompt", "provider_response_id": response_id, "prompt": text, "metadata": {}})
}

pub(crate) fn usage(
    response_id: &str,
    input: i64,
    output: i64,
    cached: i64,
    extra: Value,
) -> Value {
    json!({"kind": "token_usage", "provider_response_id": response_id, "input_tokens": input,
        "output_tokens": output, "cache_read_input_tokens": cached,
        "cache_write_input_tokens": 0, "extra": extra})
}

pub(crate) fn tool(
    response_id: &str,
    call: &str,
    name: &str,
    input: Value,
    metadata: Value,
) -> Value {
    json!({"kind": "tool_usage", "provider_response_id": response_id,
        "provider_tool_call_id": call, "server_url": null, "tool": name, "input": input,
        "injected": false, "invocation_error": null, "metadata": metadata})
}

pub(crate) fn thought(content: &str, source: &str) -> Value {
    json!({"kind": "model_thought", "content": content, "metadata": {"source": source}})
}

/// The records of the interception that answered `resp`, normalized.
pub(crate) async fn records(bridge: &TestBridge, resp: &reqwest::Response) -> Vec<Value> {
    normalized(&bridge.records_of(interception_id(resp)).await)
}

fn chunk(choices: Value, usage: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1767225600,
        "model": "gpt-5", "system_fingerprint": "fp_1", "choices": choices, "usage": usage})
}

fn delta(delta: Value, finish: Value) -> Value {
    json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}])
}

fn sse(chunks: &[Value]) -> String {
    let mut out: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out
}

fn usage_chunk(prompt: i64, completion: i64, cached: i64) -> Value {
    chunk(
        json!([]),
        json!({"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
    )
}

fn usage_extra(total: i64) -> Value {
    json!({"input_audio_tokens": 0, "reasoning_tokens": 0, "output_audio_tokens": 0,
        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0, "total_tokens": total})
}

fn completion(message: Value, finish: &str, usage: Value) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1767225600,
        "model": "gpt-5", "choices": [{"index": 0, "message": message, "logprobs": null,
        "finish_reason": finish}], "usage": usage, "system_fingerprint": "fp_1"})
}

fn body(stream: bool, include_usage: bool) -> String {
    let mut b = json!({"model": "gpt-5", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather in"}, {"type": "text", "text": "Paris?"}]}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "custom", "custom": {"name": "apply_patch", "format": {"type": "text"}}}]});
    if stream {
        b["stream"] = json!(true);
    }
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b.to_string()
}

const PROMPT: &str = "weather in\nParis?";
pub(crate) const AUTH: (&str, &str) = ("authorization", "Bearer sk-client-0123456789abcdef");

async fn post(bridge: &TestBridge, body: &str) -> reqwest::Response {
    bridge.post(PATH, &[AUTH], body.to_owned()).await
}

#[tokio::test]
async fn blocking_text_forwards_the_body_unchanged() {
    let bridge = TestBridge::start().await;
    let answer = completion(
        json!({"role": "assistant", "content": "Sunny.", "refusal": null, "annotations": []}),
        "stop",
        json!({"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}),
    )
    .to_string();
    bridge.mock.enqueue(MockResponse::json(200, answer.clone()));
    // Odd spacing, unknown fields and key order must reach the upstream as sent.
    let sent = "{ \"model\":\"gpt-5\",  \"x_future\": {\"b\":1,\"a\":[1.50,2]},\n \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] }";
    let resp = post(&bridge, sent).await;
    assert_eq!(resp.status(), 200);
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), answer);
    let upstream = bridge.mock.requests();
    assert_eq!(upstream[0].path_and_query, "/v1/chat/completions");
    assert_eq!(upstream[0].body, sent.as_bytes());
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", false, json!({})),
            prompt("chatcmpl-1", "hi"),
            usage("chatcmpl-1", 20, 3, 0, usage_extra(23)),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn streaming_without_include_usage_hides_the_usage_chunk() {
    let bridge = TestBridge::start().await;
    let content = [
        chunk(
            delta(json!({"role": "assistant", "content": ""}), json!(null)),
            json!(null),
        ),
        chunk(delta(json!({"content": "Sun"}), json!(null)), json!(null)),
        chunk(delta(json!({"content": "ny."}), json!("stop")), json!(null)),
    ];
    let mut all = content.to_vec();
    all.push(usage_chunk(20, 3, 0));
    bridge.mock.enqueue(MockResponse::sse(sse(&all)));
    let sent =
        r#"{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}],"n":1}"#;
    let resp = post(&bridge, sent).await;
    assert_eq!(resp.status(), 200);
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), sse(&content));
    assert_eq!(
        bridge.mock.requests()[0].body,
        r#"{"model":"gpt-5","stream":true,"messages":[{"role":"user","content":"hi"}],"n":1,"stream_options":{"include_usage":true}}"#
            .as_bytes()
    );
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", "hi"),
            usage("chatcmpl-1", 20, 3, 0, usage_extra(23)),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn streaming_with_include_usage_is_relayed_byte_for_byte() {
    let bridge = TestBridge::start().await;
    let transcript = sse(&[
        chunk(
            delta(json!({"role": "assistant", "content": "Hi"}), json!("stop")),
            json!(null),
        ),
        usage_chunk(30, 1, 25),
    ]);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let sent = body(true, true);
    let resp = post(&bridge, &sent).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(bridge.mock.requests()[0].body, sent.as_bytes());
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            usage("chatcmpl-1", 5, 1, 25, usage_extra(31)),
            ended("completed", 200, json!({})),
        ]
    );
}

fn call_delta(index: u64, id: &str, name: &str) -> Value {
    json!({"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}})
}

fn args_delta(index: u64, args: &str) -> Value {
    json!({"index": index, "function": {"arguments": args}})
}

#[tokio::test]
async fn streaming_parallel_tool_calls_are_all_recorded() {
    let bridge = TestBridge::start().await;
    let transcript = sse(&[
        chunk(
            delta(
                json!({"role": "assistant", "content": null, "tool_calls": [call_delta(0, "call_a", "get_weather")]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            delta(
                json!({"tool_calls": [args_delta(0, "{\"city\":")]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            delta(
                json!({"tool_calls": [args_delta(0, "\"Paris\"}")]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            delta(
                json!({"tool_calls": [call_delta(1, "call_b", "get_weather")]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            delta(
                json!({"tool_calls": [args_delta(1, "{\"city\":\"Lyon\"}")]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(delta(json!({}), json!("tool_calls")), json!(null)),
        usage_chunk(40, 30, 0),
    ]);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &body(true, true)).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            usage("chatcmpl-1", 40, 30, 0, usage_extra(70)),
            tool(
                "chatcmpl-1",
                "call_a",
                "get_weather",
                json!({"city": "Paris"}),
                json!({})
            ),
            tool(
                "chatcmpl-1",
                "call_b",
                "get_weather",
                json!({"city": "Lyon"}),
                json!({})
            ),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn blocking_tool_calls_custom_tool_and_cached_tokens() {
    let bridge = TestBridge::start().await;
    let answer = completion(
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "not json"}},
            {"id": "call_c", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin Patch"}}]}),
        "tool_calls",
        json!({"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050,
            "prompt_tokens_details": {"cached_tokens": 900, "audio_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 20, "audio_tokens": 5,
                "accepted_prediction_tokens": 6, "rejected_prediction_tokens": 7}}),
    )
    .to_string();
    bridge.mock.enqueue(MockResponse::json(200, answer.clone()));
    let resp = post(&bridge, &body(false, false)).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), answer);
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", false, json!({})),
            prompt("chatcmpl-1", PROMPT),
            usage(
                "chatcmpl-1",
                100,
                50,
                900,
                json!({"input_audio_tokens": 4,
                "reasoning_tokens": 20, "output_audio_tokens": 5,
                "accepted_prediction_tokens": 6, "rejected_prediction_tokens": 7,
                "total_tokens": 1050})
            ),
            tool(
                "chatcmpl-1",
                "call_a",
                "get_weather",
                json!({"city": "Paris"}),
                json!({})
            ),
            tool(
                "chatcmpl-1",
                "call_b",
                "get_weather",
                json!("not json"),
                json!({})
            ),
            tool(
                "chatcmpl-1",
                "call_c",
                "apply_patch",
                json!("*** Begin Patch"),
                json!({"type": "custom"})
            ),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn streaming_custom_tool_call() {
    let bridge = TestBridge::start().await;
    let transcript = sse(&[
        chunk(
            delta(
                json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_c", "type": "custom", "custom": {"name": "apply_patch", "input": "*** Begin"}}]}),
                json!(null),
            ),
            json!(null),
        ),
        chunk(
            delta(
                json!({"tool_calls": [{"index": 0, "custom": {"input": " Patch"}}]}),
                json!("tool_calls"),
            ),
            json!(null),
        ),
    ]);
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &body(true, true)).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            tool(
                "chatcmpl-1",
                "call_c",
                "apply_patch",
                json!("*** Begin Patch"),
                json!({"type": "custom"})
            ),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn upstream_401_and_429_are_relayed_with_their_bodies() {
    let bridge = TestBridge::start().await;
    for (status, stream) in [(401, false), (401, true), (429, false), (429, true)] {
        let error = json!({"error": {"message": format!("status {status}"), "type": "invalid_request_error", "param": null, "code": "x"}}).to_string();
        bridge
            .mock
            .enqueue(MockResponse::json(status, error.clone()));
        let resp = post(&bridge, &body(stream, false)).await;
        assert_eq!(resp.status().as_u16(), status);
        let recs = records(&bridge, &resp).await;
        assert_eq!(resp.text().await.unwrap(), error);
        assert_eq!(
            recs,
            vec![
                interception("chat_completions", stream, json!({})),
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
        let error = r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#;
        bridge.mock.enqueue(MockResponse::json(500, error));
        let resp = post(&bridge, &body(stream, false)).await;
        assert_eq!(resp.status(), 500);
        let recs = records(&bridge, &resp).await;
        assert_eq!(resp.text().await.unwrap(), error);
        assert_eq!(
            recs,
            vec![
                interception("chat_completions", stream, json!({})),
                prompt("", PROMPT),
                ended("upstream_error", 500, json!({"error": error})),
            ],
            "stream={stream}"
        );
    }
}

#[tokio::test]
async fn mid_stream_error_reaches_the_client_as_sent() {
    let bridge = TestBridge::start().await;
    let transcript = format!(
        "data: {}\n\ndata: {}\n\n",
        chunk(
            delta(json!({"role": "assistant", "content": "Par"}), json!(null)),
            json!(null)
        ),
        json!({"error": {"message": "The server is overloaded", "type": "server_error", "param": null, "code": "overloaded"}}),
    );
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &body(true, false)).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            ended(
                "upstream_error",
                200,
                json!({"error": "overloaded: The server is overloaded"})
            ),
        ]
    );
}

#[tokio::test]
async fn malformed_sse_lines_are_relayed_as_received() {
    let bridge = TestBridge::start().await;
    let transcript = format!(
        ": keep-alive\n\ndata: {}\n\ndata: {{not json\n\ngarbage without a field\n\nevent: odd\ndata: [1,2]\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(
            delta(json!({"role": "assistant", "content": "ok"}), json!("stop")),
            json!(null)
        ),
        usage_chunk(12, 1, 0),
    );
    bridge.mock.enqueue(MockResponse::sse(transcript.clone()));
    let resp = post(&bridge, &body(true, true)).await;
    let recs = records(&bridge, &resp).await;
    assert_eq!(resp.text().await.unwrap(), transcript);
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            usage("chatcmpl-1", 12, 1, 0, usage_extra(13)),
            ended("completed", 200, json!({})),
        ]
    );
}

#[tokio::test]
async fn bridge_errors_use_openai_format_and_nothing_goes_upstream() {
    let bridge = TestBridge::start().await;
    for (sent, message) in [
        ("{not json", "request body is not valid JSON"),
        (r#"{"messages":[]}"#, "you must provide a model parameter"),
        (
            r#"{"model":"gpt-5","stream":"yes"}"#,
            "stream: expected a boolean",
        ),
        (
            r#"["gpt-5", [], true]"#,
            "request body must be a JSON object",
        ),
    ] {
        let resp = post(&bridge, sent).await;
        assert_eq!(resp.status(), 400);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], Value::Null);
        assert_eq!(v["error"]["code"], Value::Null);
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(message),
            "{v}"
        );
    }
    assert!(bridge.mock.requests().is_empty());
    crate::support::assert_only_rejections(&bridge.recorder.records());
}

#[tokio::test]
async fn centralized_key_replaces_the_clients() {
    let bridge = TestBridge::start_with(Setup {
        openai_key: Some("sk-proj-central-key-9999".into()),
        ..Setup::default()
    })
    .await;
    let answer = completion(
        json!({"role": "assistant", "content": "ok"}),
        "stop",
        json!(null),
    )
    .to_string();
    bridge.mock.enqueue(MockResponse::json(200, answer));
    let headers = [
        AUTH,
        ("session_id", "sess-1"),
        ("originator", "codex_cli_rs"),
        ("x-unknown-thing", "1"),
    ];
    let sent = r#"{"model":"gpt-5","messages":[{"role":"user","content":"hi"}]}"#;
    let resp = bridge.post(PATH, &headers, sent).await;
    let recs = records(&bridge, &resp).await;
    let upstream = &bridge.mock.requests()[0];
    assert_eq!(
        upstream.header("authorization"),
        Some("Bearer sk-proj-central-key-9999")
    );
    for (name, value) in &headers[1..] {
        assert_eq!(upstream.header(name), Some(*value), "{name}");
    }
    assert_eq!(
        recs,
        vec![
            interception(
                "chat_completions",
                false,
                json!({"credential_kind": "centralized", "credential_hint": "sk-p…9999",
                    "client": "codex", "client_session_id": "sess-1"})
            ),
            prompt("chatcmpl-1", "hi"),
            ended("completed", 200, json!({})),
        ]
    );
}

/// A stream the upstream breaks off after `chunks`.
pub(crate) fn cut_after(chunks: &[String]) -> MockResponse {
    MockResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: mock_upstream::MockBody::CutAfter(
            chunks
                .iter()
                .map(|c| (std::time::Duration::ZERO, c.clone().into()))
                .collect(),
        ),
    }
}

#[tokio::test]
async fn a_broken_stream_ends_with_an_openai_error_chunk() {
    let bridge = TestBridge::start().await;
    let first = format!(
        "data: {}\n\n",
        chunk(
            delta(json!({"role": "assistant", "content": "Par"}), json!(null)),
            json!(null)
        )
    );
    bridge.mock.enqueue(cut_after(std::slice::from_ref(&first)));
    let resp = post(&bridge, &body(true, false)).await;
    let recs = records(&bridge, &resp).await;
    let text = resp.text().await.unwrap();
    let tail = text
        .strip_prefix(&first)
        .expect("the chunk before the break");
    let data = tail
        .strip_prefix("data: ")
        .unwrap()
        .strip_suffix("\n\n")
        .unwrap();
    let error: Value = serde_json::from_str(data).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("upstream stream broke off"),
        "{message}"
    );
    assert_eq!(
        error,
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": "upstream_error"}})
    );
    assert_eq!(
        recs,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-1", PROMPT),
            ended("upstream_unavailable", 200, json!({"error": message})),
        ]
    );
}
