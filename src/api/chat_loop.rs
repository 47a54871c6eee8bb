//! The Chat Completions half of the tool loop: tools offered as `function` tools, injected
//! `tool_calls` answered with `role: "tool"` messages, and several upstream streams turned into
//! one client stream (one completion id, injected `tool_calls` deltas hidden, the held finish
//! chunk, usage chunk and `[DONE]` sent once at the end).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::intercept::tool_loop::{LoopApi, PendingCall, StreamRewriter};
use crate::mcp::{InjectedTool, ToolCallResult};
use crate::sse::SseEvent;

/// The Chat Completions loop.
pub struct ChatLoop;

/// The one instance the dispatcher hands out.
pub static CHAT_LOOP: ChatLoop = ChatLoop;

/// Adds every numeric field of `from` (nested objects included) into `into`.
pub(crate) fn add_numbers(into: &mut Map<String, Value>, from: Option<&Value>) {
    let Some(Value::Object(from)) = from else {
        return;
    };
    for (k, v) in from {
        match v {
            Value::Number(n) => {
                let sum =
                    into.get(k).and_then(Value::as_i64).unwrap_or(0) + n.as_i64().unwrap_or(0);
                into.insert(k.clone(), Value::from(sum));
            }
            Value::Object(_) => {
                let entry = into
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(inner) = entry {
                    add_numbers(inner, Some(v));
                }
            }
            _ => {}
        }
    }
}

fn message_of(response: &Value) -> Option<&Value> {
    response.get("choices")?.get(0)?.get("message")
}

fn call_name(call: &Value) -> Option<&str> {
    call.get("function")?.get("name")?.as_str()
}

impl LoopApi for ChatLoop {
    fn inject_tools(&self, body: &mut Value, tools: &[InjectedTool]) {
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        if obj.get("stream").and_then(Value::as_bool) == Some(true) {
            // Usage of every round is recorded; the client sees the usage chunk only if it asked.
            let options = obj
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        let list = obj
            .entry("tools")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            for tool in tools {
                let mut function = Map::new();
                function.insert("name".into(), Value::String(tool.name.clone()));
                if let Some(d) = &tool.description {
                    function.insert("description".into(), Value::String(d.clone()));
                }
                function.insert("parameters".into(), tool.input_schema.clone());
                list.push(json!({"type": "function", "function": Value::Object(function)}));
            }
        }
    }

    fn forbid_tools(&self, body: &mut Value) {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("tool_choice".into(), Value::String("none".into()));
        }
    }

    fn calls(&self, response: &Value) -> Vec<PendingCall> {
        let Some(Value::Array(calls)) = message_of(response).and_then(|m| m.get("tool_calls"))
        else {
            return Vec::new();
        };
        calls
            .iter()
            .map(|c| PendingCall {
                id: c
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: call_name(c).unwrap_or_default().to_owned(),
                arguments: crate::api::parse_arguments(
                    c.pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                ),
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
        let mut assistant = message_of(response)
            .cloned()
            .unwrap_or_else(|| json!({"role": "assistant"}));
        if let Some(obj) = assistant.as_object_mut() {
            // Fields only a response carries.
            obj.remove("refusal");
            obj.remove("annotations");
        }
        messages.push(assistant);
        for (call, result) in results {
            messages.push(
                json!({"role": "tool", "tool_call_id": call.id, "content": result.to_text()}),
            );
        }
    }

    fn merge(
        &self,
        earlier: Option<Value>,
        mut next: Value,
        injected: &dyn Fn(&str) -> bool,
    ) -> Value {
        let mut text = String::new();
        let mut usage = Map::new();
        let mut id = None;
        if let Some(earlier) = &earlier {
            id = earlier.get("id").cloned();
            if let Some(t) = message_of(earlier)
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
            {
                text.push_str(t);
            }
            add_numbers(&mut usage, earlier.get("usage"));
        }
        add_numbers(&mut usage, next.get("usage"));
        if let Some(obj) = next.as_object_mut() {
            if let Some(id) = id {
                obj.insert("id".into(), id);
            }
            if obj.contains_key("usage") {
                obj.insert("usage".into(), Value::Object(usage));
            }
        }
        if let Some(choice) = next.pointer_mut("/choices/0") {
            let mut client_calls = false;
            if let Some(message) = choice.get_mut("message").and_then(Value::as_object_mut) {
                if let Some(t) = message.get("content").and_then(Value::as_str) {
                    text.push_str(t);
                }
                if !text.is_empty() || earlier.is_some() {
                    message.insert(
                        "content".into(),
                        if text.is_empty() {
                            Value::Null
                        } else {
                            Value::String(text)
                        },
                    );
                }
                if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                    calls.retain(|c| !call_name(c).is_some_and(injected));
                    client_calls = !calls.is_empty();
                    if !client_calls {
                        message.remove("tool_calls");
                    }
                }
            }
            if !client_calls
                && choice.get("finish_reason").and_then(Value::as_str) == Some("tool_calls")
            {
                choice["finish_reason"] = Value::String("stop".into());
            }
        }
        next
    }

    fn rewriter(&self, request: &Value) -> Box<dyn StreamRewriter> {
        let wants_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Box::new(ChatRewriter {
            wants_usage,
            ..ChatRewriter::default()
        })
    }
}

/// Rewrites a sequence of upstream chunk streams into one client stream.
#[derive(Default)]
struct ChatRewriter {
    wants_usage: bool,
    /// The first round's completion id, used for every chunk.
    id: Option<Value>,
    /// The first chunk's `object`, `created` and `model`, for the chunks the bridge writes.
    first: Map<String, Value>,
    /// Upstream tool-call index → client index, or `None` for a hidden (injected) call.
    map: HashMap<u64, Option<u64>>,
    next_index: u64,
    client_calls: bool,
    /// This round, accumulated.
    base: Map<String, Value>,
    content: String,
    calls: Vec<(u64, Value)>,
    finish: Option<Value>,
    usage: Map<String, Value>,
    round_usage: Option<Value>,
    /// The last finish chunk, held until the end.
    held_finish: Option<Value>,
}

fn data_frame(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

impl ChatRewriter {
    /// Hides injected calls from a chunk and renumbers the rest; returns whether anything
    /// is left to send.
    fn filter_calls(&mut self, chunk: &mut Value, injected: &dyn Fn(&str) -> bool) -> bool {
        let Some(Value::Array(calls)) = chunk.pointer_mut("/choices/0/delta/tool_calls") else {
            return true;
        };
        let mut kept = Vec::with_capacity(calls.len());
        for mut call in calls.drain(..) {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let mapped = match self.map.get(&index) {
                Some(m) => *m,
                None => {
                    let hidden = call_name(&call).is_some_and(injected);
                    let m = (!hidden).then(|| {
                        let i = self.next_index;
                        self.next_index += 1;
                        i
                    });
                    self.map.insert(index, m);
                    m
                }
            };
            if let Some(client) = mapped {
                self.client_calls = true;
                call["index"] = Value::from(client);
                kept.push(call);
            }
        }
        let empty = kept.is_empty();
        *calls = kept;
        if empty
            && let Some(delta) = chunk
                .pointer_mut("/choices/0/delta")
                .and_then(Value::as_object_mut)
        {
            delta.remove("tool_calls");
            return delta.values().any(|v| !v.is_null());
        }
        true
    }

    fn accumulate(&mut self, chunk: &Value) {
        if self.first.is_empty()
            && let Some(obj) = chunk.as_object()
        {
            for key in ["object", "created", "model"] {
                if let Some(v) = obj.get(key) {
                    self.first.insert(key.to_owned(), v.clone());
                }
            }
        }
        if self.base.is_empty()
            && let Some(obj) = chunk.as_object()
        {
            for key in [
                "id",
                "object",
                "created",
                "model",
                "system_fingerprint",
                "service_tier",
            ] {
                if let Some(v) = obj.get(key) {
                    self.base.insert(key.to_owned(), v.clone());
                }
            }
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str) {
            self.content.push_str(t);
        }
        if let Some(Value::Array(calls)) = choice.pointer("/delta/tool_calls") {
            for call in calls {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let slot = match self.calls.iter().position(|(i, _)| *i == index) {
                    Some(p) => p,
                    None => {
                        self.calls.push((index, json!({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})));
                        self.calls.len() - 1
                    }
                };
                let entry = &mut self.calls[slot].1;
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    entry["id"] = Value::String(id.to_owned());
                }
                for field in ["name", "arguments"] {
                    if let Some(piece) = call
                        .pointer(&format!("/function/{field}"))
                        .and_then(Value::as_str)
                    {
                        let prev = entry["function"][field].as_str().unwrap_or("").to_owned();
                        entry["function"][field] = Value::String(prev + piece);
                    }
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
            self.finish = Some(f.clone());
        }
    }
}

impl StreamRewriter for ChatRewriter {
    fn begin(&mut self) {
        self.map.clear();
        self.base.clear();
        self.content.clear();
        self.calls.clear();
        self.finish = None;
        self.round_usage = None;
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
        if data.trim() == "[DONE]" {
            return;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&data) else {
            out.push(event.raw.clone());
            return;
        };
        if chunk.get("error").is_some() {
            out.push(event.raw.clone());
            return;
        }
        self.accumulate(&chunk);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.round_usage = Some(u.clone());
        }
        let id = self
            .id
            .get_or_insert_with(|| chunk.get("id").cloned().unwrap_or(Value::Null))
            .clone();
        let choices_empty = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if choices_empty {
            // The usage-only chunk: summed and sent once at the end.
            return;
        }
        let finishing = chunk
            .pointer("/choices/0/finish_reason")
            .is_some_and(|f| !f.is_null());
        let keep = self.filter_calls(&mut chunk, injected);
        if let Some(obj) = chunk.as_object_mut() {
            obj.insert("id".into(), id);
            if obj.get("usage").is_some_and(Value::is_null) {
                // Chunks of a round carry `usage: null` when usage was asked for; keep that
                // shape only for clients that asked.
                if !self.wants_usage {
                    obj.remove("usage");
                }
            }
        }
        if finishing {
            self.held_finish = Some(chunk);
            return;
        }
        if keep {
            out.push(data_frame(&chunk));
        }
    }

    fn end(&mut self) -> Value {
        add_numbers(&mut self.usage, self.round_usage.as_ref());
        let mut message = Map::new();
        message.insert("role".into(), Value::String("assistant".into()));
        message.insert(
            "content".into(),
            if self.content.is_empty() {
                Value::Null
            } else {
                Value::String(std::mem::take(&mut self.content))
            },
        );
        if !self.calls.is_empty() {
            let calls = std::mem::take(&mut self.calls)
                .into_iter()
                .map(|(_, c)| c)
                .collect();
            message.insert("tool_calls".into(), Value::Array(calls));
        }
        let mut response = std::mem::take(&mut self.base);
        response.insert(
            "choices".into(),
            json!([{"index": 0, "message": Value::Object(message), "finish_reason": self.finish.take()}]),
        );
        if let Some(u) = self.round_usage.take() {
            response.insert("usage".into(), u);
        }
        Value::Object(response)
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        if let Some(mut chunk) = self.held_finish.take() {
            if !self.client_calls
                && chunk
                    .pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
                    == Some("tool_calls")
            {
                chunk["choices"][0]["finish_reason"] = Value::String("stop".into());
            }
            out.push(data_frame(&chunk));
        }
        if self.wants_usage && !self.usage.is_empty() {
            let mut chunk = Map::new();
            chunk.insert("id".into(), self.id.clone().unwrap_or(Value::Null));
            for (k, v) in &self.first {
                chunk.insert(k.clone(), v.clone());
            }
            chunk.insert("choices".into(), Value::Array(Vec::new()));
            chunk.insert("usage".into(), Value::Object(self.usage.clone()));
            out.push(data_frame(&Value::Object(chunk)));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b": keepalive\n\n")
    }
}
