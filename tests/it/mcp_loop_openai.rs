//! The injected-tool loop on Chat Completions and Responses, blocking and streaming, against
//! the in-process test MCP server: the client sees one completion / one response.

use std::sync::Arc;
use std::time::Duration;

use aibridge::intercept::tool_loop::ToolSource;
use aibridge::mcp::{RawMcpConfig, RawMcpServer, ToolRegistry, validate};
use serde_json::{Value, json};

use crate::records_of_kind;
use crate::support::{Setup, TestBridge, interception_id};

const CHAT: &str = "/openai/v1/chat/completions";
const RESPONSES: &str = "/openai/v1/responses";
const AUTH: (&str, &str) = ("authorization", "Bearer sk-test-openai-0123456789");

async fn start(max_loop_iterations: u32) -> (TestBridge, test_mcp::HttpServer) {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let raw = RawMcpConfig {
        max_loop_iterations: Some(max_loop_iterations),
        keepalive_interval: None,
        servers: vec![RawMcpServer {
            name: "test".into(),
            url: Some(server.url()),
            deny: vec!["^pid$".into()],
            ..Default::default()
        }],
    };
    let registry = ToolRegistry::start(&validate(raw, &|_| None).unwrap(), None);
    registry.wait_ready(Duration::from_secs(10)).await;
    let bridge = TestBridge::start_with(Setup {
        tools: Some(registry as Arc<dyn ToolSource>),
        max_loop_iterations,
        ..Default::default()
    })
    .await;
    (bridge, server)
}

fn data_lines(stream: &str) -> Vec<&str> {
    stream
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .collect()
}

/// What a Chat client accumulates from a stream, checking one id and one `[DONE]`.
fn accumulate_chat(stream: &str) -> (Value, Option<Value>) {
    let lines = data_lines(stream);
    assert_eq!(
        lines.iter().filter(|l| **l == "[DONE]").count(),
        1,
        "{stream}"
    );
    assert_eq!(lines.last(), Some(&"[DONE]"), "{stream}");
    let chunks: Vec<Value> = lines
        .iter()
        .filter(|l| **l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: std::collections::BTreeSet<_> = chunks
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "one completion id: {stream}");
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    let mut finish = Value::Null;
    let mut usage = None;
    for c in &chunks {
        if c["choices"].as_array().unwrap().is_empty() {
            usage = Some(c["usage"].clone());
            continue;
        }
        let choice = &c["choices"][0];
        if let Some(t) = choice["delta"]["content"].as_str() {
            content.push_str(t);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            assert!(i <= calls.len(), "tool call indices consecutive: {stream}");
            if i == calls.len() {
                calls.push(json!({"name": "", "arguments": ""}));
            }
            if let Some(n) = call["function"]["name"].as_str() {
                calls[i]["name"] = json!(calls[i]["name"].as_str().unwrap().to_owned() + n);
            }
            if let Some(a) = call["function"]["arguments"].as_str() {
                calls[i]["arguments"] =
                    json!(calls[i]["arguments"].as_str().unwrap().to_owned() + a);
            }
        }
        if !choice["finish_reason"].is_null() {
            finish = choice["finish_reason"].clone();
        }
    }
    (
        json!({"content": content, "tool_calls": calls, "finish_reason": finish}),
        usage,
    )
}

fn chat_request(prompt: &str, stream: bool, include_usage: bool) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "stream": stream,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}],
        "messages": [{"role": "user", "content": prompt}]
    });
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test]
async fn chat_injected_call_then_text() {
    let (bridge, _server) = start(10).await;
    let prompt = r#"[[tool:bmcp_test_echo {"text":"chat-mcp"}]]"#;
    // Blocking.
    let resp = bridge
        .post(
            CHAT,
            &[AUTH],
            chat_request(prompt, false, false).to_string(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = interception_id(&resp);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result: chat-mcp"
    );
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let records = bridge.records_of(id).await;
    let t = &records_of_kind!(records, ToolUsage)[0];
    assert_eq!((t.tool.as_str(), t.injected), ("bmcp_test_echo", true));
    assert_eq!(records_of_kind!(records, TokenUsage).len(), 2);
    let second = bridge.mock.requests()[1].json();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[2],
        json!({"role": "tool", "tool_call_id": msgs[1]["tool_calls"][0]["id"], "content": "chat-mcp"})
    );

    // Streaming, with and without the usage chunk.
    for include_usage in [false, true] {
        let resp = bridge
            .post(
                CHAT,
                &[AUTH],
                chat_request(prompt, true, include_usage).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let (message, usage) = accumulate_chat(&text);
        assert_eq!(message["content"], "Tool result: chat-mcp", "{text}");
        assert_eq!(message["tool_calls"], json!([]), "{text}");
        assert_eq!(message["finish_reason"], "stop");
        assert_eq!(usage.is_some(), include_usage, "{text}");
        let records = bridge.records_of(id).await;
        let usage: Vec<_> = records_of_kind!(records, TokenUsage)
            .iter()
            .map(|u| (u.input_tokens, u.output_tokens))
            .collect();
        assert_eq!(usage, vec![(11, 3), (13, 5)], "{records:#?}");
        let tools: Vec<_> = records_of_kind!(records, ToolUsage)
            .into_iter()
            .map(|t| (t.tool, t.injected, t.input, t.invocation_error))
            .collect();
        assert_eq!(
            tools,
            vec![(
                "bmcp_test_echo".to_owned(),
                true,
                json!({"text": "chat-mcp"}),
                None
            )]
        );
    }
}

#[tokio::test]
async fn chat_client_tool_beside_injected_ones() {
    let (bridge, _server) = start(10).await;
    for stream in [false, true] {
        let resp = bridge
            .post(
                CHAT,
                &[AUTH],
                chat_request("[[tool:get_weather]]", stream, false).to_string(),
            )
            .await;
        let text = resp.text().await.unwrap();
        let names: Vec<String> = if stream {
            let (m, _) = accumulate_chat(&text);
            m["tool_calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names, vec!["get_weather"]);
    }
    let offered = bridge.mock.requests()[0].json();
    let tools: Vec<_> = offered["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tools[0], "get_weather");
    assert!(tools.contains(&"bmcp_test_add".to_owned()));
    assert!(!tools.contains(&"bmcp_test_pid".to_owned()));
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}})
}

fn responses_request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "tools": [weather_tool()],
        "input": prompt
    })
}

/// A request like Codex's: not stored upstream, so parallel tool calls stay allowed.
fn unstored_request(prompt: &str, stream: bool) -> Value {
    let mut body = responses_request(prompt, stream);
    body["store"] = json!(false);
    body
}

/// The response a client ends up with: the blocking body, or the stream's final
/// `response.completed` response (the stream's shape checked on the way).
fn client_response(text: &str, stream: bool) -> Value {
    if stream {
        completed_response(text)
    } else {
        serde_json::from_str(text).unwrap()
    }
}

/// The events of a Responses stream, in order.
fn events(stream: &str) -> Vec<Value> {
    data_lines(stream)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Checks a Responses stream's shape and returns its final `response.completed` response.
fn completed_response(stream: &str) -> Value {
    let events: Vec<Value> = data_lines(stream)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["sequence_number"].as_u64(),
            Some(i as u64),
            "sequence numbers consecutive: {stream}"
        );
    }
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(
        (count("response.created"), count("response.completed")),
        (1, 1),
        "{stream}"
    );
    let added: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .map(|e| e["output_index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        added,
        (0..added.len() as u64).collect::<Vec<_>>(),
        "output indices consecutive: {stream}"
    );
    // Every event of an item carries the index its `output_item.added` gave it.
    let mut index_of = std::collections::HashMap::new();
    for e in &events {
        let item_id = e["item_id"].as_str().or(e["item"]["id"].as_str());
        let Some(item_id) = item_id else { continue };
        if e["type"] == "response.output_item.added" {
            index_of.insert(item_id.to_owned(), e["output_index"].clone());
        } else {
            assert_eq!(
                index_of.get(item_id),
                Some(&e["output_index"]),
                "output_index of {item_id} in {e}: {stream}"
            );
        }
    }
    let created_id = events[0]["response"]["id"].clone();
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["id"], created_id,
        "one response id: {stream}"
    );
    let output = done["response"]["output"].as_array().unwrap();
    assert_eq!(output.len(), added.len(), "{stream}");
    for (i, item) in output.iter().enumerate() {
        assert_eq!(
            index_of.get(item["id"].as_str().unwrap()),
            Some(&json!(i)),
            "the final output in stream order: {stream}"
        );
    }
    done["response"].clone()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|c| c["text"].as_str())
        .collect()
}

#[tokio::test]
async fn responses_injected_calls_then_text() {
    let (bridge, _server) = start(10).await;
    let prompt =
        r#"[[tool:bmcp_test_echo {"text":"resp-mcp"}]] [[tool:bmcp_test_add {"a":1,"b":2}]]"#;
    for stream in [false, true] {
        let before = bridge.mock.requests().len();
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                unstored_request(prompt, stream).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let response = client_response(&text, stream);
        assert_eq!(
            output_text(&response),
            "Tool result: resp-mcp | 3",
            "{text}"
        );
        let shape: Vec<_> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(shape, vec!["message"], "{response}");
        let records = bridge.records_of(id).await;
        let tools: Vec<_> = records_of_kind!(records, ToolUsage)
            .into_iter()
            .map(|t| (t.tool, t.injected, t.input, t.invocation_error))
            .collect();
        assert_eq!(
            tools,
            vec![
                (
                    "bmcp_test_echo".to_owned(),
                    true,
                    json!({"text": "resp-mcp"}),
                    None
                ),
                (
                    "bmcp_test_add".to_owned(),
                    true,
                    json!({"a": 1, "b": 2}),
                    None
                ),
            ]
        );
        let usage: Vec<_> = records_of_kind!(records, TokenUsage)
            .iter()
            .map(|u| {
                (
                    u.provider_response_id.clone(),
                    u.input_tokens,
                    u.output_tokens,
                )
            })
            .collect();
        // Round 1: the prompt (11 in), two calls (5 out); round 2: + 2 calls + 2 outputs.
        assert_eq!(
            usage.iter().map(|u| (u.1, u.2)).collect::<Vec<_>>(),
            vec![(11, 5), (15, 5)]
        );
        // Not stored: the client keeps the first round's id.
        assert_eq!(response["id"].as_str(), Some(usage[0].0.as_str()));
        assert_eq!(response["usage"]["input_tokens"], 26, "{response}");
        assert_eq!(response["usage"]["output_tokens"], 10, "{response}");
        // Without `store`, parallel calls stay allowed.
        let first = bridge.mock.requests()[before].json();
        assert_eq!(first.get("parallel_tool_calls"), None);
        let second = bridge.mock.requests()[before + 1].json();
        let input = second["input"].as_array().unwrap();
        assert_eq!(input[0], json!({"role": "user", "content": prompt}));
        let outputs: Vec<_> = input
            .iter()
            .filter(|i| i["type"] == "function_call_output")
            .map(|i| i["output"].clone())
            .collect();
        assert_eq!(outputs, vec![json!("resp-mcp"), json!("3")]);
    }
}

#[tokio::test]
async fn responses_loop_cap_and_text_before_call() {
    let (bridge, _server) = start(1).await;
    let mut prompt = "done".to_owned();
    for _ in 0..3 {
        prompt = format!("[[tool:bmcp_test_echo {}]]", json!({ "text": prompt }));
    }
    for stream in [false, true] {
        let before = bridge.mock.requests().len();
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(&prompt, stream).to_string(),
            )
            .await;
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let response = client_response(&text, stream);
        assert_eq!(
            output_text(&response),
            "Tool result: tool loop limit reached: answer without calling more tools",
            "{text}"
        );
        assert_eq!(bridge.mock.requests().len() - before, 3);
        assert_eq!(
            bridge.mock.requests().last().unwrap().json()["tool_choice"],
            "none"
        );
        // The client sees its own request echoed, not the forced `tool_choice`.
        assert_eq!(response["tool_choice"], "auto", "{response}");
        // Stored: a blocking client gets the last round's id, the one that can be continued
        // from; a stream keeps the id `response.created` announced, the first round's (the
        // bridge maps it to the last when the client continues from it).
        let records = bridge.records_of(id).await;
        let ids: Vec<_> = records_of_kind!(records, TokenUsage)
            .into_iter()
            .map(|u| u.provider_response_id)
            .collect();
        assert_eq!(ids.len(), 3);
        let shown = if stream { &ids[0] } else { &ids[2] };
        assert_eq!(response["id"].as_str(), Some(shown.as_str()), "{text}");
    }
    for stream in [false, true] {
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(r#"[[text-then-tool:bmcp_test_echo {"text":"z"}]]"#, stream)
                    .to_string(),
            )
            .await;
        let text = resp.text().await.unwrap();
        let response = client_response(&text, stream);
        assert_eq!(
            output_text(&response),
            "Calling bmcp_test_echo.Tool result: z",
            "{text}"
        );
    }
}

/// Every `response` object a client sees: the blocking body, or each one in the stream.
fn response_objects(text: &str, stream: bool) -> Vec<Value> {
    if stream {
        events(text)
            .into_iter()
            .filter_map(|e| e.get("response").cloned())
            .collect()
    } else {
        vec![serde_json::from_str(text).unwrap()]
    }
}

#[tokio::test]
async fn responses_never_show_the_injected_tools() {
    let (bridge, _server) = start(10).await;
    let prompt = r#"[[tool:bmcp_test_echo {"text":"quiet"}]]"#;
    for (body, tools, choice, parallel) in [
        // The client's own tools and choices, as sent (the bridge sent `false` upstream).
        (
            responses_request(prompt, false),
            json!([weather_tool()]),
            json!("auto"),
            json!(true),
        ),
        (
            json!({"model": "gpt-test", "input": prompt, "tool_choice": "auto", "parallel_tool_calls": true}),
            json!([]),
            json!("auto"),
            json!(true),
        ),
    ] {
        for stream in [false, true] {
            let mut body = body.clone();
            body["stream"] = json!(stream);
            let resp = bridge.post(RESPONSES, &[AUTH], body.to_string()).await;
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.unwrap();
            assert!(!text.contains("bmcp_"), "injected tools leaked: {text}");
            let objects = response_objects(&text, stream);
            assert_eq!(objects.len(), if stream { 3 } else { 1 }, "{text}");
            for r in objects {
                assert_eq!(
                    (&r["tools"], &r["tool_choice"], &r["parallel_tool_calls"]),
                    (&tools, &choice, &parallel),
                    "{text}"
                );
            }
            assert_eq!(
                output_text(&client_response(&text, stream)),
                "Tool result: quiet"
            );
        }
    }
}

#[tokio::test]
async fn responses_continue_from_the_id_after_a_loop() {
    let (bridge, _server) = start(10).await;
    for stream in [false, true] {
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(r#"[[tool:bmcp_test_echo {"text":"first"}]]"#, stream)
                    .to_string(),
            )
            .await;
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let first = client_response(&text, stream);
        assert_eq!(output_text(&first), "Tool result: first");
        let records = bridge.records_of(id).await;
        let rounds: Vec<_> = records_of_kind!(records, TokenUsage)
            .into_iter()
            .map(|u| u.provider_response_id)
            .collect();
        assert_eq!(rounds.len(), 2);
        // The next turn continues the conversation; the upstream finds every call answered.
        let next = json!({
            "model": "gpt-test",
            "stream": stream,
            "previous_response_id": first["id"],
            "input": "and then?",
        });
        let resp = bridge.post(RESPONSES, &[AUTH], next.to_string()).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            output_text(&client_response(&text, stream)),
            "Mock answer: and then?"
        );
        // Upstream, that turn continued from the loop's last response, whatever id the
        // client was shown.
        let sent = bridge.mock.requests().last().unwrap().json();
        assert_eq!(
            sent["previous_response_id"].as_str(),
            Some(rounds[1].as_str())
        );
        assert_eq!(sent["input"], "and then?");
    }
    // The round that called the injected tool cannot be continued from: its call is
    // answered only inside the bridge's next round (the mock checks like the API does).
    let called = bridge
        .recorder
        .records()
        .into_iter()
        .find_map(|r| match r {
            aibridge::record::Record::ToolUsage(t) if t.injected => Some(t.provider_response_id),
            _ => None,
        })
        .unwrap();
    let next = json!({"model": "gpt-test", "previous_response_id": called, "input": "x"});
    let resp = bridge.post(RESPONSES, &[AUTH], next.to_string()).await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("No tool output found for function call call_mock"),
        "{error}"
    );
}

#[tokio::test]
async fn responses_stored_turns_make_one_call_at_a_time() {
    let (bridge, _server) = start(10).await;
    // Stored, with a client tool: a turn calling it and an injected tool could not be
    // continued from, so the bridge asks for one call per turn (and the mock obeys).
    let prompt = r#"[[tool:get_weather {"city":"Oslo"}]] [[tool:bmcp_test_echo {"text":"m"}]]"#;
    for stream in [false, true] {
        let before = bridge.mock.requests().len();
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(prompt, stream).to_string(),
            )
            .await;
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let response = client_response(&text, stream);
        let calls: Vec<_> = response["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["type"].clone(), i["name"].clone(), i["arguments"].clone()))
            .collect();
        assert_eq!(
            calls,
            vec![(
                json!("function_call"),
                json!("get_weather"),
                json!(r#"{"city":"Oslo"}"#)
            )]
        );
        assert_eq!(
            response["parallel_tool_calls"], true,
            "as the client sent it"
        );
        assert_eq!(bridge.mock.requests().len() - before, 1);
        let sent = bridge.mock.requests()[before].json();
        assert_eq!(sent["parallel_tool_calls"], false);
        let records = bridge.records_of(id).await;
        let tools: Vec<_> = records_of_kind!(records, ToolUsage)
            .into_iter()
            .map(|t| (t.tool, t.injected))
            .collect();
        assert_eq!(tools, vec![("get_weather".to_owned(), false)]);
        // The client answers its call on the stored response: valid upstream.
        let next = json!({
            "model": "gpt-test",
            "stream": stream,
            "previous_response_id": response["id"],
            "input": [{"type": "function_call_output", "call_id": response["output"][0]["call_id"], "output": "sunny"}],
        });
        let resp = bridge.post(RESPONSES, &[AUTH], next.to_string()).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            output_text(&client_response(&text, stream)),
            "Tool result: sunny"
        );
    }
}

#[tokio::test]
async fn images_and_resources_in_openai_tool_results() {
    let (bridge, _server) = start(10).await;
    let resource = "[resource test://resource/text]\nhello from a resource\n[resource test://resource/blob: application/octet-stream]";
    // Chat tool messages are text: an image is a placeholder.
    for (prompt, content) in [
        ("[[tool:bmcp_test_image]]", "[image: image/png]"),
        ("[[tool:bmcp_test_resource]]", resource),
    ] {
        let resp = bridge
            .post(
                CHAT,
                &[AUTH],
                chat_request(prompt, false, false).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let last = bridge.mock.requests().last().unwrap().json();
        let tool = last["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(tool["role"], "tool");
        assert_eq!(tool["content"], content);
    }
    // Responses takes images in a function_call_output: the model sees the picture.
    for (prompt, output) in [
        (
            "[[tool:bmcp_test_image]]",
            json!([{"type": "input_image", "image_url": format!("data:image/png;base64,{}", test_mcp::TINY_PNG)}]),
        ),
        ("[[tool:bmcp_test_resource]]", json!(resource)),
    ] {
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(prompt, false).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let last = bridge.mock.requests().last().unwrap().json();
        let item = last["input"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(item["type"], "function_call_output");
        assert_eq!(item["output"], output);
    }
}

#[tokio::test]
async fn tool_choice_none_skips_injection_on_openai() {
    let (bridge, _server) = start(10).await;
    let mut chat = chat_request("hi", false, false);
    chat["tool_choice"] = json!("none");
    let mut responses = responses_request("hi", false);
    responses["tool_choice"] = json!("none");
    for (path, body) in [(CHAT, chat), (RESPONSES, responses)] {
        let sent = body.to_string();
        let resp = bridge.post(path, &[AUTH], sent.clone()).await;
        assert_eq!(resp.status(), 200);
        let upstream = bridge.mock.requests().last().unwrap().clone();
        assert_eq!(String::from_utf8_lossy(&upstream.body), sent, "{path}");
    }
}
