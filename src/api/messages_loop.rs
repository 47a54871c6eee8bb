//! The Anthropic Messages half of the tool loop: injecting tools, answering `tool_use` with
//! `tool_result`, and turning several upstream streams into one client message (one
//! `message_start`, injected blocks hidden, block indices consecutive, one final
//! `message_delta` with cumulative usage, one `message_stop`).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::chat_loop::add_numbers;
use crate::intercept::tool_loop::{LoopApi, PendingCall, StreamRewriter};
use crate::mcp::{InjectedTool, ToolCallResult, ToolResultContent};
use crate::sse::SseEvent;

/// The Messages loop.
pub struct MessagesLoop;

/// The one instance the dispatcher hands out.
pub static MESSAGES_LOOP: MessagesLoop = MessagesLoop;

/// Usage summed over responses: every count, nested ones (`cache_creation.*`,
/// `server_tool_use.*`) included; labels such as `service_tier` are the last response's.
fn add_usage(total: &mut Map<String, Value>, usage: Option<&Value>) {
    add_numbers(total, usage);
}

fn result_blocks(result: &ToolCallResult) -> Vec<Value> {
    if let Some(error) = &result.invocation_error {
        return vec![json!({"type": "text", "text": error})];
    }
    let mut blocks: Vec<Value> = result
        .content
        .iter()
        .map(|c| match c {
            ToolResultContent::Text(text) => json!({"type": "text", "text": text}),
            ToolResultContent::Image { data, mime_type } => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": mime_type, "data": data},
            }),
            resource @ ToolResultContent::Resource { .. } => {
                json!({"type": "text", "text": resource.to_text()})
            }
        })
        .collect();
    if blocks.is_empty() {
        blocks.push(json!({"type": "text", "text": "(no output)"}));
    }
    blocks
}

fn is_hidden(block: &Value, injected: &dyn Fn(&str) -> bool) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_use")
        && block
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(injected)
}

impl LoopApi for MessagesLoop {
    fn inject_tools(&self, body: &mut Value, tools: &[InjectedTool]) {
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        let list = obj
            .entry("tools")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            for tool in tools {
                let mut t = Map::new();
                t.insert("name".into(), Value::String(tool.name.clone()));
                if let Some(d) = &tool.description {
                    t.insert("description".into(), Value::String(d.clone()));
                }
                t.insert("input_schema".into(), tool.input_schema.clone());
                list.push(Value::Object(t));
            }
        }
    }

    fn forbid_tools(&self, body: &mut Value) {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("tool_choice".into(), json!({"type": "none"}));
        }
    }

    fn calls(&self, response: &Value) -> Vec<PendingCall> {
        let Some(Value::Array(content)) = response.get("content") else {
            return Vec::new();
        };
        content
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
            .map(|b| PendingCall {
                id: b
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: b
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                arguments: b.get("input").cloned().unwrap_or(Value::Null),
            })
            .collect()
    }

    fn append_turn(
        &self,
        body: &mut Value,
        response: &Value,
        results: &[(PendingCall, ToolCallResult)],
    ) {
        let Some(Value::Array(messages)) = body.get_mut("messages") else {
            return;
        };
        let content = response
            .get("content")
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        messages.push(json!({"role": "assistant", "content": content}));
        let results: Vec<Value> = results
            .iter()
            .map(|(call, result)| {
                json!({
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": result_blocks(result),
                    "is_error": result.is_error || result.invocation_error.is_some(),
                })
            })
            .collect();
        messages.push(json!({"role": "user", "content": results}));
    }

    fn merge(
        &self,
        earlier: Option<Value>,
        mut next: Value,
        injected: &dyn Fn(&str) -> bool,
    ) -> Value {
        let mut content: Vec<Value> = Vec::new();
        let mut usage = Map::new();
        let mut id = None;
        if let Some(earlier) = earlier {
            id = earlier.get("id").cloned();
            if let Some(Value::Array(blocks)) = earlier.get("content") {
                content.extend(blocks.iter().cloned());
            }
            add_usage(&mut usage, earlier.get("usage"));
        }
        if let Some(Value::Array(blocks)) = next.get("content") {
            content.extend(blocks.iter().filter(|b| !is_hidden(b, injected)).cloned());
        }
        add_usage(&mut usage, next.get("usage"));
        let client_calls = content
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
        if let Some(obj) = next.as_object_mut() {
            if let Some(id) = id {
                obj.insert("id".into(), id);
            }
            obj.insert("content".into(), Value::Array(content));
            if let Some(Value::Object(u)) = obj.get_mut("usage") {
                for (k, v) in usage {
                    u.insert(k, v);
                }
            }
            if !client_calls && obj.get("stop_reason").and_then(Value::as_str) == Some("tool_use") {
                obj.insert("stop_reason".into(), Value::String("end_turn".into()));
            }
        }
        next
    }

    fn rewriter(&self, _request: &Value) -> Box<dyn StreamRewriter> {
        Box::new(MessagesRewriter::default())
    }
}

/// Rewrites a sequence of upstream Messages streams into one client stream.
#[derive(Default)]
struct MessagesRewriter {
    started: bool,
    next_index: u64,
    /// Upstream index → client index, or `None` for a hidden block.
    map: HashMap<u64, Option<u64>>,
    /// Usage summed over finished upstream responses.
    total: Map<String, Value>,
    /// This response, accumulated in blocking shape.
    message: Map<String, Value>,
    blocks: HashMap<u64, Value>,
    partial_json: HashMap<u64, String>,
    order: Vec<u64>,
    usage: Map<String, Value>,
    last_delta: Option<Value>,
    client_tool_use: bool,
}

fn frame(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// Takes the counts of one response's `message_start` or `message_delta` usage: within a
/// response, a later count replaces an earlier one (they are cumulative).
fn merge_counts(into: &mut Map<String, Value>, from: Option<&Value>) {
    if let Some(Value::Object(from)) = from {
        for (k, v) in from {
            if v.is_number() || v.is_object() {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

impl MessagesRewriter {
    /// Forwards a block event with its index mapped; hidden blocks are dropped.
    fn block_event(
        &mut self,
        event: &SseEvent,
        name: &str,
        mut data: Value,
        upstream: u64,
        out: &mut Vec<Bytes>,
    ) {
        match self.map.get(&upstream).copied().flatten() {
            Some(client) if client == upstream => out.push(event.raw.clone()),
            Some(client) => {
                data["index"] = Value::from(client);
                out.push(frame(name, &data));
            }
            None => {}
        }
    }

    fn accumulate_delta(&mut self, index: u64, delta: &Value) {
        let Some(block) = self.blocks.get_mut(&index) else {
            return;
        };
        let append = |block: &mut Value, field: &str, piece: Option<&str>| {
            if let Some(piece) = piece {
                let prev = block
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                block[field] = Value::String(prev + piece);
            }
        };
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => append(block, "text", delta.get("text").and_then(Value::as_str)),
            Some("thinking_delta") => append(
                block,
                "thinking",
                delta.get("thinking").and_then(Value::as_str),
            ),
            Some("signature_delta") => append(
                block,
                "signature",
                delta.get("signature").and_then(Value::as_str),
            ),
            Some("input_json_delta") => {
                if let Some(piece) = delta.get("partial_json").and_then(Value::as_str) {
                    self.partial_json.entry(index).or_default().push_str(piece);
                }
            }
            Some("citations_delta") => {
                if let (Some(c), Some(obj)) = (delta.get("citation"), block.as_object_mut())
                    && let Value::Array(list) = obj
                        .entry("citations")
                        .or_insert_with(|| Value::Array(Vec::new()))
                {
                    list.push(c.clone());
                }
            }
            _ => {}
        }
    }
}

impl StreamRewriter for MessagesRewriter {
    fn begin(&mut self) {
        self.map.clear();
        self.message.clear();
        self.blocks.clear();
        self.partial_json.clear();
        self.order.clear();
        self.usage.clear();
        self.last_delta = None;
    }

    fn on_event(
        &mut self,
        event: &SseEvent,
        injected: &dyn Fn(&str) -> bool,
        out: &mut Vec<Bytes>,
    ) {
        let Some(data) = event.data() else {
            out.push(event.raw.clone());
            return;
        };
        let Ok(data) = serde_json::from_str::<Value>(&data) else {
            out.push(event.raw.clone());
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let index = data.get("index").and_then(Value::as_u64);
        match (kind.as_str(), index) {
            ("message_start", _) => {
                if let Some(Value::Object(msg)) = data.get("message") {
                    self.message = msg.clone();
                    merge_counts(&mut self.usage, msg.get("usage"));
                }
                if !self.started {
                    self.started = true;
                    out.push(event.raw.clone());
                }
            }
            ("content_block_start", Some(i)) => {
                let block = data.get("content_block").cloned().unwrap_or(Value::Null);
                let hidden = is_hidden(&block, injected);
                if !hidden && block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    self.client_tool_use = true;
                }
                let client = (!hidden).then(|| {
                    let c = self.next_index;
                    self.next_index += 1;
                    c
                });
                self.map.insert(i, client);
                self.blocks.insert(i, block);
                self.order.push(i);
                self.block_event(event, &kind, data, i, out);
            }
            ("content_block_delta", Some(i)) => {
                if let Some(delta) = data.get("delta") {
                    self.accumulate_delta(i, delta);
                }
                self.block_event(event, &kind, data, i, out);
            }
            ("content_block_stop", Some(i)) => {
                if let Some(json) = self.partial_json.remove(&i)
                    && let Some(block) = self.blocks.get_mut(&i)
                {
                    block["input"] = crate::api::parse_arguments(&json);
                }
                self.block_event(event, &kind, data, i, out);
            }
            ("message_delta", _) => {
                merge_counts(&mut self.usage, data.get("usage"));
                self.last_delta = Some(data);
            }
            ("message_stop", _) => {}
            _ => out.push(event.raw.clone()),
        }
    }

    fn end(&mut self) -> Value {
        let mut message = std::mem::take(&mut self.message);
        let content: Vec<Value> = self
            .order
            .iter()
            .filter_map(|i| self.blocks.remove(i))
            .collect();
        message.insert("content".into(), Value::Array(content));
        if let Some(Value::Object(delta)) = self.last_delta.as_ref().and_then(|d| d.get("delta")) {
            for (k, v) in delta {
                message.insert(k.clone(), v.clone());
            }
        }
        let usage = Value::Object(std::mem::take(&mut self.usage));
        add_usage(&mut self.total, Some(&usage));
        message.insert("usage".into(), usage);
        Value::Object(message)
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        // An upstream stream that ended without its `message_delta` still gives the client
        // a complete message: the totals, a stop reason, and `message_stop`.
        let mut delta = self.last_delta.take().unwrap_or_else(|| {
            let stop = if self.client_tool_use {
                "tool_use"
            } else {
                "end_turn"
            };
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {},
            })
        });
        if let Some(Value::Object(usage)) = delta.get_mut("usage") {
            for (k, v) in &self.total {
                usage.insert(k.clone(), v.clone());
            }
        } else {
            delta["usage"] = Value::Object(self.total.clone());
        }
        if !self.client_tool_use
            && delta.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("tool_use")
        {
            delta["delta"]["stop_reason"] = Value::String("end_turn".into());
        }
        out.push(frame("message_delta", &delta));
        out.push(frame("message_stop", &json!({"type": "message_stop"})));
    }

    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: i64, output: i64, five_m: i64, searches: i64, tier: &str) -> Value {
        json!({
            "input_tokens": input,
            "output_tokens": output,
            "cache_creation": {"ephemeral_5m_input_tokens": five_m, "ephemeral_1h_input_tokens": 1},
            "server_tool_use": {"web_search_requests": searches},
            "service_tier": tier,
        })
    }

    #[test]
    fn merged_usage_sums_nested_counts() {
        let injected = |name: &str| name.starts_with("bmcp_");
        let first = json!({"id": "msg_1", "content": [{"type": "tool_use", "id": "t", "name": "bmcp_x", "input": {}}],
            "stop_reason": "tool_use", "usage": usage(10, 2, 3, 1, "standard")});
        let second = json!({"id": "msg_2", "content": [{"type": "text", "text": "ok"}],
            "stop_reason": "end_turn", "usage": usage(20, 5, 4, 2, "priority")});
        let earlier = MESSAGES_LOOP.merge(None, first, &injected);
        let merged = MESSAGES_LOOP.merge(Some(earlier), second, &injected);
        assert_eq!(merged["id"], "msg_1");
        assert_eq!(merged["content"], json!([{"type": "text", "text": "ok"}]));
        assert_eq!(
            merged["usage"],
            json!({
                "input_tokens": 30,
                "output_tokens": 7,
                "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 2},
                "server_tool_use": {"web_search_requests": 3},
                "service_tier": "priority",
            })
        );
    }

    fn events(rewriter: &mut MessagesRewriter, events: &[Value], out: &mut Vec<Bytes>) {
        let injected = |name: &str| name.starts_with("bmcp_");
        for e in events {
            let raw = format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap());
            rewriter.on_event(&SseEvent::new(raw.into()), &injected, out);
        }
    }

    fn parsed(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|b| {
                let text = std::str::from_utf8(b).unwrap();
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    #[test]
    fn a_round_without_message_delta_still_ends_the_message() {
        let mut r = MessagesRewriter::default();
        let mut out = Vec::new();
        r.begin();
        events(
            &mut r,
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "content": [], "usage": usage(10, 1, 3, 1, "standard")}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "t", "name": "bmcp_x", "input": {}}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
                json!({"type": "message_stop"}),
            ],
            &mut out,
        );
        r.end();
        r.begin();
        // The second upstream stream breaks off after its text: no message_delta, no stop.
        events(
            &mut r,
            &[
                json!({"type": "message_start", "message": {"id": "msg_2", "content": [], "usage": usage(20, 1, 4, 2, "standard")}}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
                json!({"type": "content_block_stop", "index": 0}),
            ],
            &mut out,
        );
        r.end();
        r.finish(&mut out);
        let events = parsed(&out);
        let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[1]["index"], 0);
        assert_eq!(
            events[4],
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {
                    "input_tokens": 30,
                    "output_tokens": 5,
                    "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 2},
                    "server_tool_use": {"web_search_requests": 3},
                },
            })
        );
    }
}
