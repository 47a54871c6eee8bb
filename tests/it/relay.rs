//! Streams are relayed as they arrive (each event flushed at once), and every OpenAI wire
//! fixture replayed through the bridge reaches the client byte for byte and leaves exactly the
//! records its content implies.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mock_upstream::{MockBody, MockResponse, fixture, split_sse_events};
use serde_json::{Value, json};

use crate::openai_chat::{AUTH, ended, interception, normalized, prompt, thought, tool, usage};
use crate::support::{TestBridge, interception_id};

const GAP: Duration = Duration::from_secs(2);

/// The fixture's events, with a `GAP` before the third one.
fn with_gap(path: &str) -> MockResponse {
    let chunks = split_sse_events(&fixture(path))
        .into_iter()
        .enumerate()
        .map(|(i, event)| (if i == 2 { GAP } else { Duration::ZERO }, event))
        .collect();
    MockResponse::fault(MockBody::Chunks(chunks)).with_header("content-type", "text/event-stream")
}

#[tokio::test]
async fn each_event_reaches_the_client_before_the_next_one_exists() {
    let bridge = TestBridge::start().await;
    let cases = [
        (
            "/anthropic/v1/messages",
            "anthropic/simple_text.sse",
            json!({"model": "claude-test-1", "max_tokens": 10, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/openai/v1/chat/completions",
            "openai-chat/simple_text.sse",
            json!({"model": "gpt-5", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/openai/v1/responses",
            "openai-responses/simple_text.sse",
            json!({"model": "gpt-5", "stream": true, "input": "hi"}),
        ),
    ];
    for (path, file, body) in cases {
        bridge.mock.enqueue(with_gap(file));
        let events = split_sse_events(&fixture(file));
        let first_two: Bytes = [events[0].clone(), events[1].clone()].concat().into();
        let started = Instant::now();
        let mut resp = bridge.post(path, &[AUTH], body.to_string()).await;
        assert_eq!(resp.status(), 200, "{path}");
        let mut got = Vec::new();
        while got.len() < first_two.len() {
            let chunk = tokio::time::timeout(GAP, resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("{path}: the first two events were held back"))
                .unwrap()
                .unwrap();
            got.extend_from_slice(&chunk);
        }
        let early = started.elapsed();
        assert_eq!(got, first_two, "{path}");
        assert!(early < GAP, "{path}: first events after {early:?}");
        while let Some(chunk) = resp.chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert!(started.elapsed() >= GAP, "{path}: the gap was not there");
        assert_eq!(got, fixture(file), "{path}");
    }
}

// ------------------------------------------------------------ OpenAI fixtures, replayed

/// Model and prompt of the replayed requests.
const PROMPT: &str = "replay";

fn chat_request(stream: bool, include_usage: bool) -> String {
    let mut b = json!({"model": "gpt-5", "messages": [{"role": "user", "content": PROMPT}]});
    if stream {
        b["stream"] = json!(true);
    }
    if include_usage {
        b["stream_options"] = json!({"include_usage": true});
    }
    b.to_string()
}

fn responses_request(stream: bool) -> String {
    json!({"model": "gpt-5", "stream": stream, "input": PROMPT}).to_string()
}

/// Sends `request` to `path` with `file` as the upstream's answer (with `status`); checks the
/// client gets that status and the fixture's exact bytes; returns the normalized records.
async fn replay(
    bridge: &TestBridge,
    path: &str,
    request: String,
    file: &str,
    status: u16,
) -> Vec<Value> {
    bridge.mock.enqueue(if file.ends_with(".sse") {
        MockResponse::sse_fixture(file)
    } else {
        MockResponse::json_fixture(status, file)
    });
    let resp = bridge.post(path, &[AUTH], request).await;
    assert_eq!(resp.status().as_u16(), status, "{file}");
    let id = interception_id(&resp);
    let body = resp.bytes().await.unwrap();
    assert_eq!(body, fixture(file), "{file}");
    normalized(&bridge.records_of(id).await)
}

/// Chat Completions usage extras when every detail field is zero.
fn chat_extra(total: i64, reasoning: i64) -> Value {
    json!({"input_audio_tokens": 0, "reasoning_tokens": reasoning, "output_audio_tokens": 0,
        "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0, "total_tokens": total})
}

/// What each Chat Completions fixture leaves between the interception's start and end.
fn chat_expected(name: &str, with_usage: bool) -> Vec<Value> {
    let u = |id: &str, input, output, cached, total| {
        with_usage.then(|| usage(id, input, output, cached, chat_extra(total, 0)))
    };
    let (id, calls, usage_rec): (&str, Vec<Value>, Option<Value>) = match name {
        "simple_text" => {
            let id = "chatcmpl-FixSimpleText0000000000001";
            (id, vec![], u(id, 19, 10, 0, 29))
        }
        "tool_call" => {
            let id = "chatcmpl-FixToolCall00000000000001";
            let call = tool(
                id,
                "call_FixWeather0000000000001",
                "get_weather",
                json!({"location": "Paris, France"}),
                json!({}),
            );
            (id, vec![call], u(id, 82, 17, 0, 99))
        }
        "parallel_tool_calls" => {
            let id = "chatcmpl-FixParallel00000000000001";
            let calls = vec![
                tool(
                    id,
                    "call_FixWeather0000000000002",
                    "get_weather",
                    json!({"location": "Paris, France"}),
                    json!({}),
                ),
                tool(
                    id,
                    "call_FixTime000000000000001",
                    "get_time",
                    json!({"timezone": "Europe/Paris"}),
                    json!({}),
                ),
            ];
            (id, calls, u(id, 95, 44, 0, 139))
        }
        "cached_tokens" => {
            let id = "chatcmpl-FixCached000000000000001";
            (id, vec![], u(id, 2006 - 1920, 12, 1920, 2018))
        }
        "malformed_lines" => {
            let id = "chatcmpl-FixMalformed00000000001";
            (id, vec![], u(id, 19, 3, 0, 22))
        }
        other => panic!("no expectation for {other}"),
    };
    let mut out = vec![prompt(id, PROMPT)];
    out.extend(usage_rec);
    out.extend(calls);
    out
}

#[tokio::test]
async fn chat_fixtures_replay_byte_for_byte_with_exact_records() {
    const PATH: &str = "/openai/v1/chat/completions";
    let bridge = TestBridge::start().await;
    for name in [
        "simple_text",
        "tool_call",
        "parallel_tool_calls",
        "cached_tokens",
    ] {
        let file = format!("openai-chat/{name}.json");
        let got = replay(&bridge, PATH, chat_request(false, false), &file, 200).await;
        let mut want = vec![interception("chat_completions", false, json!({}))];
        want.extend(chat_expected(name, true));
        want.push(ended("completed", 200, json!({})));
        assert_eq!(got, want, "{file}");
    }
    // Streams the client asked usage for: relayed as they are, usage recorded.
    for name in [
        "simple_text",
        "tool_call",
        "parallel_tool_calls",
        "cached_tokens",
        "malformed_lines",
    ] {
        let file = format!("openai-chat/{name}.sse");
        let got = replay(&bridge, PATH, chat_request(true, true), &file, 200).await;
        let mut want = vec![interception("chat_completions", true, json!({}))];
        want.extend(chat_expected(name, true));
        want.push(ended("completed", 200, json!({})));
        assert_eq!(got, want, "{file}");
    }
    // An upstream that ignores the usage the bridge asked for: the stream still passes
    // unchanged, and no usage is made up.
    for name in ["simple_text", "tool_call", "parallel_tool_calls"] {
        let file = format!("openai-chat/{name}.no_usage.sse");
        let got = replay(&bridge, PATH, chat_request(true, false), &file, 200).await;
        let mut want = vec![interception("chat_completions", true, json!({}))];
        want.extend(chat_expected(name, false));
        want.push(ended("completed", 200, json!({})));
        assert_eq!(got, want, "{file}");
    }

    let error = fixture("openai-chat/error_429.json");
    let error = std::str::from_utf8(&error).unwrap();
    for stream in [false, true] {
        let file = "openai-chat/error_429.json";
        let got = replay(&bridge, PATH, chat_request(stream, true), file, 429).await;
        assert_eq!(
            got,
            vec![
                interception("chat_completions", stream, json!({})),
                prompt("", PROMPT),
                ended("upstream_error", 429, json!({"error": error})),
            ],
            "{file} stream={stream}"
        );
    }

    let file = "openai-chat/error_midstream.sse";
    let got = replay(&bridge, PATH, chat_request(true, true), file, 200).await;
    assert_eq!(
        got,
        vec![
            interception("chat_completions", true, json!({})),
            prompt("chatcmpl-FixMidstreamError000001", PROMPT),
            ended(
                "upstream_error",
                200,
                json!({"error": "server_error: The server had an error while processing your request. Sorry about that!"})
            ),
        ]
    );
}

/// Responses usage extras.
fn responses_usage(id: &str, input: i64, cached: i64, output: i64, reasoning: i64) -> Value {
    usage(
        id,
        input - cached,
        output,
        cached,
        json!({"reasoning_tokens": reasoning, "total_tokens": input + output}),
    )
}

/// What each Responses fixture leaves between the interception's start and end.
fn responses_expected(name: &str) -> Vec<Value> {
    let none = json!({});
    match name {
        "simple_text" => {
            let id = "resp_FixSimpleText000000000001";
            vec![prompt(id, PROMPT), responses_usage(id, 36, 0, 9, 0)]
        }
        "function_call" => {
            let id = "resp_FixFunctionCall0000000001";
            vec![
                prompt(id, PROMPT),
                responses_usage(id, 75, 0, 24, 0),
                tool(
                    id,
                    "call_FixWeather0000000000003",
                    "get_weather",
                    json!({"location": "Paris, France"}),
                    none,
                ),
            ]
        }
        "parallel_function_calls" => {
            let id = "resp_FixParallelCalls000000001";
            vec![
                prompt(id, PROMPT),
                responses_usage(id, 80, 0, 50, 0),
                tool(
                    id,
                    "call_FixWeather0000000000004",
                    "get_weather",
                    json!({"location": "Paris, France"}),
                    none.clone(),
                ),
                tool(
                    id,
                    "call_FixTime000000000000002",
                    "get_time",
                    json!({"timezone": "Europe/Paris"}),
                    none,
                ),
            ]
        }
        "reasoning_summary" => {
            let id = "resp_FixReasoningSummary00001";
            vec![
                prompt(id, PROMPT),
                responses_usage(id, 40, 0, 320, 256),
                thought(
                    "**Comparing options**\n\nWeighing the two designs.",
                    "reasoning_summary",
                ),
            ]
        }
        "commentary" => {
            let id = "resp_FixCommentary0000000001";
            vec![
                prompt(id, PROMPT),
                responses_usage(id, 3200, 0, 60, 0),
                tool(
                    id,
                    "call_FixExec0000000000000001",
                    "exec_command",
                    json!({"cmd": "ls -la"}),
                    none,
                ),
                thought("I'll list the files first.", "commentary"),
            ]
        }
        "custom_tool_call" => {
            let id = "resp_FixCustomToolCall000001";
            vec![
                prompt(id, PROMPT),
                responses_usage(id, 2900, 0, 120, 0),
                tool(
                    id,
                    "call_FixApplyPatch000000001",
                    "apply_patch",
                    json!("*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"),
                    json!({"type": "custom_tool_call"}),
                ),
            ]
        }
        "cached_tokens" => {
            let id = "resp_FixCachedTokens000000001";
            vec![prompt(id, PROMPT), responses_usage(id, 4100, 3968, 15, 0)]
        }
        "malformed_lines" => {
            let id = "resp_FixMalformed000000000001";
            vec![prompt(id, PROMPT), responses_usage(id, 36, 0, 3, 0)]
        }
        other => panic!("no expectation for {other}"),
    }
}

#[tokio::test]
async fn responses_fixtures_replay_byte_for_byte_with_exact_records() {
    const PATH: &str = "/openai/v1/responses";
    let bridge = TestBridge::start().await;
    let both = [
        "simple_text",
        "function_call",
        "parallel_function_calls",
        "reasoning_summary",
        "commentary",
        "custom_tool_call",
        "cached_tokens",
    ];
    for name in both {
        for stream in [false, true] {
            let file = format!(
                "openai-responses/{name}.{}",
                if stream { "sse" } else { "json" }
            );
            let got = replay(&bridge, PATH, responses_request(stream), &file, 200).await;
            let mut want = vec![interception("responses", stream, json!({}))];
            want.extend(responses_expected(name));
            want.push(ended("completed", 200, json!({})));
            assert_eq!(got, want, "{file}");
        }
    }
    // Failures inside a started stream: relayed as sent, recorded as upstream errors.
    for (file, id, error) in [
        (
            "openai-responses/error.sse",
            "resp_FixError0000000000000001",
            "rate_limit_exceeded: Rate limit reached for gpt-5.",
        ),
        (
            "openai-responses/failed.sse",
            "resp_FixFailed00000000000001",
            "server_error: The model failed to generate a response.",
        ),
    ] {
        let got = replay(&bridge, PATH, responses_request(true), file, 200).await;
        assert_eq!(
            got,
            vec![
                interception("responses", true, json!({})),
                prompt(id, PROMPT),
                ended("upstream_error", 200, json!({"error": error})),
            ],
            "{file}"
        );
    }
    let file = "openai-responses/malformed_lines.sse";
    let got = replay(&bridge, PATH, responses_request(true), file, 200).await;
    let mut want = vec![interception("responses", true, json!({}))];
    want.extend(responses_expected("malformed_lines"));
    want.push(ended("completed", 200, json!({})));
    assert_eq!(got, want, "{file}");
}
