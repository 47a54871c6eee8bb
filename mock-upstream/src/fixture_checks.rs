//! Checks every fixture under `tests/fixtures/` against the documented event rules, and that
//! each `X.sse` adds up to its `X.json` (same text, tool inputs and usage).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::{fixture, fixtures_dir, parse_sse};

fn files(dir: &str, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no {ext} fixtures in {dir}");
    out
}

fn text(path: &str) -> String {
    String::from_utf8(fixture(path).to_vec()).unwrap()
}

/// The JSON events of a transcript; lenient files (`malformed_lines`) may carry junk to skip.
fn json_events(path: &str) -> Vec<(Option<String>, Value)> {
    let lenient = path.contains("malformed");
    parse_sse(&text(path))
        .into_iter()
        .filter_map(|e| match serde_json::from_str::<Value>(&e.data) {
            Ok(v) => Some((e.name, v)),
            Err(_) if e.data == "[DONE]" => Some((e.name, json!("[DONE]"))),
            Err(err) => {
                assert!(lenient, "{path}: data is not JSON ({err}): {}", e.data);
                None
            }
        })
        .collect()
}

fn paired_json(sse_path: &str) -> Option<Value> {
    let base = sse_path
        .trim_end_matches(".sse")
        .trim_end_matches(".no_usage");
    let json_path = format!("{base}.json");
    Path::new(&fixtures_dir().join(&json_path))
        .exists()
        .then(|| serde_json::from_slice(&fixture(&json_path)).unwrap())
}

#[test]
fn anthropic_transcripts_follow_the_event_rules() {
    for path in files("anthropic", ".sse") {
        let events = json_events(&path);
        let mut blocks: Vec<Value> = Vec::new();
        let mut open: Option<usize> = None;
        let mut start_usage = Value::Null;
        let mut final_usage = Value::Null;
        let mut stop_reason = Value::Null;
        for (i, (name, data)) in events.iter().enumerate() {
            let kind = data["type"].as_str().unwrap();
            assert_eq!(
                name.as_deref(),
                Some(kind),
                "{path}: event name != data.type"
            );
            if i == 0 {
                assert_eq!(kind, "message_start", "{path}");
            }
            match kind {
                "message_start" => start_usage = data["message"]["usage"].clone(),
                "content_block_start" => {
                    assert_eq!(open, None, "{path}: block opened inside a block");
                    assert_eq!(data["index"], blocks.len(), "{path}: block index");
                    open = Some(blocks.len());
                    blocks.push(data["content_block"].clone());
                }
                "content_block_delta" => {
                    let index = open.unwrap();
                    assert_eq!(data["index"], index, "{path}: delta for a closed block");
                    let block = &mut blocks[index];
                    let delta = &data["delta"];
                    match (
                        block["type"].as_str().unwrap(),
                        delta["type"].as_str().unwrap(),
                    ) {
                        ("text", "text_delta") => append(&mut block["text"], &delta["text"]),
                        ("thinking", "thinking_delta") => {
                            append(&mut block["thinking"], &delta["thinking"])
                        }
                        ("thinking", "signature_delta") => {
                            block["signature"] = delta["signature"].clone()
                        }
                        ("tool_use" | "server_tool_use", "input_json_delta") => {
                            let so_far = block.get("partial").cloned().unwrap_or(json!(""));
                            let mut joined = so_far;
                            append(&mut joined, &delta["partial_json"]);
                            block["partial"] = joined;
                        }
                        (b, d) => panic!("{path}: {d} inside a {b} block"),
                    }
                }
                "content_block_stop" => {
                    assert_eq!(data["index"], open.take().unwrap(), "{path}: stop index");
                }
                "message_delta" => {
                    final_usage = data["usage"].clone();
                    stop_reason = data["delta"]["stop_reason"].clone();
                }
                "message_stop" => assert_eq!(i, events.len() - 1, "{path}: message_stop is last"),
                "error" => {
                    assert_eq!(i, events.len() - 1, "{path}: error is last");
                    assert!(data["error"]["type"].is_string(), "{path}");
                }
                "ping" | "future_event_type" => {}
                other => panic!("{path}: unknown event {other}"),
            }
        }
        let last = events.last().unwrap().1["type"].as_str().unwrap();
        assert!(
            matches!(last, "message_stop" | "error"),
            "{path}: ends with {last}"
        );
        if last == "error" {
            continue;
        }
        assert!(
            final_usage["output_tokens"].as_u64() >= start_usage["output_tokens"].as_u64(),
            "{path}: cumulative output_tokens"
        );
        for block in &mut blocks {
            if let Some(partial) = block.as_object_mut().unwrap().remove("partial") {
                block["input"] = serde_json::from_str(partial.as_str().unwrap()).unwrap();
            }
        }
        if let Some(message) = paired_json(&path) {
            assert_eq!(
                Value::Array(blocks),
                message["content"],
                "{path}: content != json"
            );
            assert_eq!(stop_reason, message["stop_reason"], "{path}");
            for field in [
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            ] {
                assert_eq!(
                    final_usage[field], message["usage"][field],
                    "{path}: usage.{field}"
                );
            }
        }
    }
}

fn append(target: &mut Value, piece: &Value) {
    let joined = format!(
        "{}{}",
        target.as_str().unwrap_or_default(),
        piece.as_str().unwrap()
    );
    *target = Value::String(joined);
}

#[test]
fn chat_transcripts_follow_the_chunk_rules() {
    for path in files("openai-chat", ".sse") {
        let events = json_events(&path);
        let mut content = String::new();
        let mut calls: BTreeMap<u64, Value> = BTreeMap::new();
        let mut usage = Value::Null;
        let mut finish = Value::Null;
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(*name, None, "{path}: chat chunks carry no event name");
            let remaining = events.len() - i - 1;
            if data == "[DONE]" {
                assert_eq!(remaining, 0, "{path}: [DONE] is last");
                continue;
            }
            if data.get("error").is_some() {
                assert_eq!(remaining, 0, "{path}: the error chunk ends the stream");
                continue;
            }
            assert_eq!(data["object"], "chat.completion.chunk", "{path}");
            let choices = data["choices"].as_array().unwrap();
            if choices.is_empty() {
                assert_eq!(
                    remaining, 1,
                    "{path}: the usage chunk comes right before [DONE]"
                );
                usage = data["usage"].clone();
                continue;
            }
            let delta = &choices[0]["delta"];
            if let Some(text) = delta["content"].as_str() {
                content.push_str(text);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let index = call["index"].as_u64().unwrap();
                let known = calls.len() as u64;
                let entry = calls.entry(index).or_insert_with(|| {
                    assert_eq!(index, known, "{path}: tool call indices count up");
                    assert!(call["id"].is_string() && call["function"]["name"].is_string(), "{path}");
                    json!({"id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}})
                });
                append(
                    &mut entry["function"]["arguments"],
                    &call["function"]["arguments"],
                );
            }
            if !choices[0]["finish_reason"].is_null() {
                finish = choices[0]["finish_reason"].clone();
            }
        }
        let last = &events.last().unwrap().1;
        assert!(
            last == "[DONE]" || last.get("error").is_some(),
            "{path}: bad ending"
        );
        if let Some(completion) = paired_json(&path) {
            let message = &completion["choices"][0]["message"];
            assert_eq!(
                message["content"].as_str().unwrap_or_default(),
                content,
                "{path}"
            );
            let streamed: Vec<Value> = calls.into_values().collect();
            assert_eq!(
                message.get("tool_calls").cloned().unwrap_or(json!([])),
                json!(streamed),
                "{path}"
            );
            assert_eq!(finish, completion["choices"][0]["finish_reason"], "{path}");
            if path.ends_with(".no_usage.sse") {
                assert!(usage.is_null(), "{path}: no usage chunk expected");
            } else {
                assert_eq!(usage, completion["usage"], "{path}: usage");
            }
        }
    }
}

#[test]
fn responses_transcripts_follow_the_event_rules() {
    for path in files("openai-responses", ".sse") {
        let events = json_events(&path);
        let mut open: BTreeMap<u64, String> = BTreeMap::new();
        let mut streamed: BTreeMap<u64, String> = BTreeMap::new();
        for (i, (name, data)) in events.iter().enumerate() {
            let kind = data["type"].as_str().unwrap();
            assert_eq!(
                name.as_deref(),
                Some(kind),
                "{path}: event name != data.type"
            );
            assert_eq!(data["sequence_number"], i, "{path}: sequence_number");
            match (i, kind) {
                (0, k) => assert_eq!(k, "response.created", "{path}"),
                (1, k) => assert_eq!(k, "response.in_progress", "{path}"),
                _ => {}
            }
            let index = data["output_index"].as_u64();
            match kind {
                "response.output_item.added" => {
                    assert!(
                        open.insert(
                            index.unwrap(),
                            data["item"]["id"].as_str().unwrap().to_owned()
                        )
                        .is_none()
                    );
                }
                "response.output_item.done" => {
                    assert!(
                        open.remove(&index.unwrap()).is_some(),
                        "{path}: done without added"
                    );
                    let item = &data["item"];
                    let full = match item["type"].as_str().unwrap() {
                        "message" => item["content"][0]["text"].clone(),
                        "reasoning" => item["summary"][0]["text"].clone(),
                        "function_call" => item["arguments"].clone(),
                        _ => item["input"].clone(),
                    };
                    let got = streamed.remove(&index.unwrap()).unwrap_or_default();
                    assert_eq!(json!(got), full, "{path}: deltas != item");
                }
                k if k.ends_with(".delta") => {
                    let index = index.unwrap();
                    assert_eq!(
                        open.get(&index).map(String::as_str),
                        data["item_id"].as_str(),
                        "{path}: {k}"
                    );
                    streamed
                        .entry(index)
                        .or_default()
                        .push_str(data["delta"].as_str().unwrap());
                }
                "response.completed" | "response.failed" | "error" => {
                    assert_eq!(i, events.len() - 1, "{path}: {kind} is last");
                }
                _ => {}
            }
        }
        let (_, last) = events.last().unwrap();
        match last["type"].as_str().unwrap() {
            "response.completed" => {
                if let Some(response) = paired_json(&path) {
                    assert_eq!(
                        last["response"], response,
                        "{path}: completed response != json"
                    );
                }
            }
            "response.failed" => assert!(last["response"]["error"]["code"].is_string(), "{path}"),
            "error" => assert!(last["message"].is_string(), "{path}"),
            other => panic!("{path}: ends with {other}"),
        }
    }
}

#[test]
fn json_fixtures_have_the_documented_shape() {
    for path in files("anthropic", ".json") {
        let v: Value = serde_json::from_slice(&fixture(&path)).unwrap();
        assert!(
            v["type"] == "message" || v["error"]["type"].is_string(),
            "{path}"
        );
    }
    for path in files("openai-chat", ".json") {
        let v: Value = serde_json::from_slice(&fixture(&path)).unwrap();
        assert!(
            v["object"] == "chat.completion" || v["error"]["message"].is_string(),
            "{path}"
        );
    }
    for path in files("openai-responses", ".json") {
        let v: Value = serde_json::from_slice(&fixture(&path)).unwrap();
        assert_eq!(v["object"], "response", "{path}");
        let usage = &v["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64(),
            Some(
                usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
            ),
            "{path}"
        );
    }
}

#[test]
fn readme_lists_every_fixture() {
    let readme = text("README.md");
    for dir in ["anthropic", "openai-chat", "openai-responses"] {
        for ext in [".json", ".sse"] {
            for path in files(dir, ext) {
                let name = path.rsplit('/').next().unwrap();
                let stem = name.split('.').next().unwrap();
                assert!(
                    readme.contains(&format!("`{stem}.")),
                    "README.md does not list {path}"
                );
            }
        }
    }
}
