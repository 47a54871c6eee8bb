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
        assert_eq!(
            records_of_kind!(records, TokenUsage).len(),
            2,
            "{records:#?}"
        );
        assert_eq!(records_of_kind!(records, ToolUsage).len(), 1);
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

fn responses_request(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
        "input": prompt
    })
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
    let created_id = events[0]["response"]["id"].clone();
    let done = events.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["id"], created_id,
        "one response id: {stream}"
    );
    assert_eq!(
        done["response"]["output"].as_array().unwrap().len(),
        added.len(),
        "{stream}"
    );
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
        let resp = bridge
            .post(
                RESPONSES,
                &[AUTH],
                responses_request(prompt, stream).to_string(),
            )
            .await;
        assert_eq!(resp.status(), 200);
        let id = interception_id(&resp);
        let text = resp.text().await.unwrap();
        let response = if stream {
            completed_response(&text)
        } else {
            serde_json::from_str(&text).unwrap()
        };
        assert_eq!(
            output_text(&response),
            "Tool result: resp-mcp | 3",
            "{text}"
        );
        assert!(
            response["output"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["type"] != "function_call"),
            "{response}"
        );
        let records = bridge.records_of(id).await;
        let tools = records_of_kind!(records, ToolUsage);
        assert_eq!(
            tools.iter().filter(|t| t.injected).count(),
            2,
            "{records:#?}"
        );
        assert_eq!(records_of_kind!(records, TokenUsage).len(), 2);
        let usage = &response["usage"];
        let sum: i64 = records_of_kind!(records, TokenUsage)
            .iter()
            .map(|u| u.output_tokens)
            .sum();
        assert_eq!(
            usage["output_tokens"].as_i64(),
            Some(sum),
            "usage summed over the loop: {response}"
        );
    }
    let second = bridge.mock.requests()[1].json();
    let input = second["input"].as_array().unwrap();
    assert_eq!(input[0], json!({"role": "user", "content": prompt}));
    let outputs: Vec<_> = input
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["output"], "resp-mcp");
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
        let text = resp.text().await.unwrap();
        let response = if stream {
            completed_response(&text)
        } else {
            serde_json::from_str(&text).unwrap()
        };
        assert!(
            output_text(&response).contains("tool loop limit reached"),
            "{text}"
        );
        assert_eq!(bridge.mock.requests().len() - before, 3);
        assert_eq!(
            bridge.mock.requests().last().unwrap().json()["tool_choice"],
            "none"
        );
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
        let response = if stream {
            completed_response(&text)
        } else {
            serde_json::from_str(&text).unwrap()
        };
        assert_eq!(
            output_text(&response),
            "Calling bmcp_test_echo.Tool result: z",
            "{text}"
        );
    }
}
