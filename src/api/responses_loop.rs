//! The Responses half of the tool loop: tools offered as `function` tools, injected
//! `function_call` items answered with `function_call_output` items appended to `input`, and
//! several upstream streams turned into one client stream (one `response.created`, injected
//! items and their events hidden, `output_index` and `sequence_number` consecutive, one final
//! `response.completed` describing the whole answer with usage summed).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::chat_loop::add_numbers;
use crate::intercept::tool_loop::{LoopApi, PendingCall, StreamRewriter, restore_echo};
use crate::mcp::{InjectedTool, ToolCallResult, ToolResultContent};
use crate::sse::SseEvent;

/// The Responses loop.
pub struct ResponsesLoop;

/// The one instance the dispatcher hands out.
pub static RESPONSES_LOOP: ResponsesLoop = ResponsesLoop;

fn is_injected_call(item: &Value, injected: &dyn Fn(&str) -> bool) -> bool {
    item.get("type").and_then(Value::as_str) == Some("function_call")
        && item
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(injected)
}

fn output(response: &Value) -> &[Value] {
    response
        .get("output")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Whether a response (or request) is not stored upstream (`store: false`): then its id
/// cannot be continued from, and the client is shown the first round's id throughout.
fn unstored(value: &Value) -> bool {
    value.get("store") == Some(&Value::Bool(false))
}

/// A `function_call_output`'s `output`: the text, or, when the result holds images, a list
/// of `input_text` and `input_image` parts (images as `data:` URLs) so the model sees them.
fn function_output(result: &ToolCallResult) -> Value {
    let has_image = result
        .content
        .iter()
        .any(|c| matches!(c, ToolResultContent::Image { .. }));
    if result.invocation_error.is_some() || !has_image {
        return Value::String(result.to_text());
    }
    let parts = result
        .content
        .iter()
        .map(|c| match c {
            ToolResultContent::Image { data, mime_type } => json!({
                "type": "input_image",
                "image_url": format!("data:{mime_type};base64,{data}"),
            }),
            other => json!({"type": "input_text", "text": other.to_text()}),
        })
        .collect();
    Value::Array(parts)
}

impl LoopApi for ResponsesLoop {
    fn inject_tools(&self, body: &mut Value, tools: &[InjectedTool]) {
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        let client_tools = obj
            .get("tools")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty());
        if client_tools && obj.get("store") != Some(&Value::Bool(false)) {
            // A turn calling a client tool and an injected one goes to the client with the
            // injected call hidden and unanswered; a stored response holding that call could
            // not be continued with `previous_response_id`. One call per turn avoids it.
            obj.insert("parallel_tool_calls".into(), Value::Bool(false));
        }
        let list = obj
            .entry("tools")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            for tool in tools {
                let mut t = Map::new();
                t.insert("type".into(), Value::String("function".into()));
                t.insert("name".into(), Value::String(tool.name.clone()));
                if let Some(d) = &tool.description {
                    t.insert("description".into(), Value::String(d.clone()));
                }
                t.insert("parameters".into(), tool.input_schema.clone());
                t.insert("strict".into(), Value::Bool(false));
                list.push(Value::Object(t));
            }
        }
    }

    fn forbid_tools(&self, body: &mut Value) {
        if let Some(obj) = body.as_object_mut() {
            obj.insert("tool_choice".into(), Value::String("none".into()));
        }
    }

    fn calls(&self, response: &Value) -> Vec<PendingCall> {
        output(response)
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
            .map(|i| PendingCall {
                id: i
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                name: i
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                arguments: crate::api::parse_arguments(
                    i.get("arguments").and_then(Value::as_str).unwrap_or(""),
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
        let Some(obj) = body.as_object_mut() else {
            return;
        };
        // A string input becomes the equivalent user message, so items can follow it.
        let input = obj
            .entry("input")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::String(text) = input {
            *input = json!([{"role": "user", "content": text.clone()}]);
        }
        if let Value::Array(items) = input {
            for item in output(response) {
                let mut item = item.clone();
                if let Some(o) = item.as_object_mut() {
                    // Output-only fields the input schema does not take.
                    o.remove("status");
                }
                items.push(item);
            }
            for (call, result) in results {
                items.push(json!({"type": "function_call_output", "call_id": call.id, "output": function_output(result)}));
            }
        }
    }

    fn echoed(&self, request: &Value) -> Map<String, Value> {
        // The API's defaults for what the client left out.
        let defaults = [
            ("tools", json!([])),
            ("tool_choice", json!("auto")),
            ("parallel_tool_calls", json!(true)),
        ];
        defaults
            .into_iter()
            .map(|(key, default)| (key.to_owned(), request.get(key).cloned().unwrap_or(default)))
            .collect()
    }

    fn merge(
        &self,
        earlier: Option<Value>,
        mut next: Value,
        injected: &dyn Fn(&str) -> bool,
    ) -> Value {
        let mut items: Vec<Value> = Vec::new();
        let mut usage = Map::new();
        let mut id = None;
        if let Some(earlier) = &earlier {
            id = earlier.get("id").cloned();
            items.extend(output(earlier).iter().cloned());
            add_numbers(&mut usage, earlier.get("usage"));
        }
        items.extend(
            output(&next)
                .iter()
                .filter(|i| !is_injected_call(i, injected))
                .cloned(),
        );
        add_numbers(&mut usage, next.get("usage"));
        // A stored response is continued from the last round's id: that response holds the
        // whole exchange, every injected call answered. The first round's would not.
        let keep_first = unstored(&next);
        if let Some(obj) = next.as_object_mut() {
            if let Some(id) = id.filter(|_| keep_first) {
                obj.insert("id".into(), id);
            }
            obj.insert("output".into(), Value::Array(items));
            if obj.contains_key("usage") {
                obj.insert("usage".into(), Value::Object(usage));
            }
        }
        next
    }

    fn rewriter(&self, request: &Value) -> Box<dyn StreamRewriter> {
        Box::new(ResponsesRewriter {
            echo: self.echoed(request),
            unstored: unstored(request),
            ..ResponsesRewriter::default()
        })
    }
}

/// Rewrites a sequence of upstream Responses streams into one client stream.
#[derive(Default)]
struct ResponsesRewriter {
    started: bool,
    /// Upstream `output_index` → client index, or `None` for a hidden item.
    map: HashMap<u64, Option<u64>>,
    next_index: u64,
    next_sequence: u64,
    /// Visible output of earlier rounds, and usage summed over them.
    merged: Option<Value>,
    /// The first round's response id (shown in `response.created`).
    id: Option<Value>,
    /// This round's final response object.
    round: Option<Value>,
    held_completed: Option<Value>,
    /// A `response.failed`, `response.incomplete` or `error` event reached the client.
    terminal_sent: bool,
    injected_names: Vec<String>,
    /// The request fields response objects echo, as the client sent them.
    echo: Map<String, Value>,
    /// The client asked for `store: false`: nothing upstream to continue from.
    unstored: bool,
    /// The id shown for the whole stream and the last round's, once finished.
    alias: Option<(String, String)>,
}

fn frame(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

impl ResponsesRewriter {
    /// Sends an event on with the next sequence number: its own bytes when nothing in it
    /// changed, else rewritten. Events carrying a `response` object always are, since the
    /// object's echo of the request was restored to the client's.
    fn emit(&mut self, event: &SseEvent, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let same = data.get("sequence_number").and_then(Value::as_u64) == Some(sequence)
            && data.get("response").is_none();
        if same
            && !self.map.values().any(|m| m.is_none())
            && self.map.iter().all(|(k, v)| Some(*k) == *v)
        {
            out.push(event.raw.clone());
            return;
        }
        data["sequence_number"] = Value::from(sequence);
        out.push(frame(kind, &data));
    }
}

impl StreamRewriter for ResponsesRewriter {
    fn begin(&mut self) {
        self.map.clear();
        self.round = None;
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
        let Ok(mut data) = serde_json::from_str::<Value>(&data) else {
            out.push(event.raw.clone());
            return;
        };
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match kind.as_str() {
            "response.created" | "response.in_progress" => {
                if self.id.is_none() {
                    self.id = data.pointer("/response/id").cloned();
                }
                if let Some(response) = data.get_mut("response") {
                    restore_echo(response, &self.echo);
                }
                if !self.started || kind == "response.in_progress" && self.next_sequence == 1 {
                    self.started = true;
                    self.emit(event, &kind, data, out);
                }
            }
            "response.completed" => {
                self.round = data.get("response").cloned();
                self.held_completed = Some(data);
            }
            "response.failed" | "response.incomplete" | "error" => {
                self.terminal_sent = true;
                if let Some(r) = data.get_mut("response") {
                    restore_echo(r, &self.echo);
                    if let Some(id) = self.id.clone() {
                        r["id"] = id;
                    }
                }
                self.emit(event, &kind, data, out);
            }
            _ => {
                let Some(index) = data.get("output_index").and_then(Value::as_u64) else {
                    self.emit(event, &kind, data, out);
                    return;
                };
                if kind == "response.output_item.added" {
                    let item = data.get("item").cloned().unwrap_or(Value::Null);
                    let hidden = is_injected_call(&item, injected);
                    if hidden && let Some(name) = item.get("name").and_then(Value::as_str) {
                        self.injected_names.push(name.to_owned());
                    }
                    let client = (!hidden).then(|| {
                        let c = self.next_index;
                        self.next_index += 1;
                        c
                    });
                    self.map.insert(index, client);
                }
                match self.map.get(&index).copied().flatten() {
                    Some(client) => {
                        data["output_index"] = Value::from(client);
                        self.emit(event, &kind, data, out);
                    }
                    None if !self.map.contains_key(&index) => self.emit(event, &kind, data, out),
                    None => {}
                }
            }
        }
    }

    fn end(&mut self) -> Value {
        if self.round.is_none() {
            // No `response.completed` in this round: an earlier round's must not stand in.
            self.held_completed = None;
        }
        let round = self.round.take().unwrap_or(Value::Null);
        let names = std::mem::take(&mut self.injected_names);
        let injected = |name: &str| names.iter().any(|n| n == name);
        self.merged = Some(RESPONSES_LOOP.merge(self.merged.take(), round.clone(), &injected));
        self.injected_names = names;
        round
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let Some(mut completed) = self.held_completed.take() else {
            if !self.terminal_sent {
                // The last round broke off without a terminal event: the client is told the
                // response is incomplete (its SDK raises) rather than seeing the stream stop.
                let error = json!({
                    "type": "error",
                    "code": "upstream_incomplete",
                    "message": "the upstream stream ended before response.completed",
                    "param": null,
                    "sequence_number": self.next_sequence,
                });
                self.next_sequence += 1;
                out.push(frame("error", &error));
            }
            return;
        };
        if let Some(mut merged) = self.merged.take() {
            // One id from `response.created` to `response.completed` (SDKs check it). When
            // stored, the last round's is the one to continue from: remembered as an alias.
            if let Some(id) = self.id.clone() {
                let last = std::mem::replace(&mut merged["id"], id.clone());
                if let (false, Some(shown), Some(real)) =
                    (self.unstored, id.as_str(), last.as_str())
                    && shown != real
                {
                    self.alias = Some((shown.to_owned(), real.to_owned()));
                }
            }
            restore_echo(&mut merged, &self.echo);
            completed["response"] = merged;
        }
        completed["sequence_number"] = Value::from(self.next_sequence);
        self.next_sequence += 1;
        out.push(frame("response.completed", &completed));
    }

    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b": keepalive\n\n")
    }

    fn response_alias(&self) -> Option<(String, String)> {
        self.alias.clone()
    }
}
