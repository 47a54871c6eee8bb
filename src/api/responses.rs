//! OpenAI Responses (`POST /v1/responses`): request view and response observer.
//!
//! Output items are recorded once each: from `response.output_item.done` events when the
//! stream has them, else from the terminal response's `output`. Usage comes from the
//! terminal event (`response.completed`, `.incomplete` or `.failed`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::openai::{ErrorView, UsageView, read_model, read_stream};
use super::scan::Content;
use super::{
    BadRequest, EventAction, Observation, Observer, RequestInfo, Thought, ToolCall, parse_arguments,
};
use crate::sse::SseEvent;

#[derive(Deserialize)]
struct ClientMetadataView {
    session_id: Option<Value>,
}

/// Reads what the bridge needs from a Responses request; the body is scanned
/// ([`super::scan`]) and only these fields and the last user message are decoded.
/// `background: true` is refused: the bridge relays one response per request and cannot
/// follow a background one.
pub fn inspect(body: &[u8]) -> Result<RequestInfo, BadRequest> {
    super::require_object(body)?;
    let view = super::scan::Body::read(body, "input")?;
    let model = read_model(view.decode("model")?)?;
    let stream = read_stream(view.decode("stream")?)?;
    if view.decode::<Value>("background")? == Some(Value::Bool(true)) {
        return Err(BadRequest::new(
            "background: background responses are not supported through this bridge; \
             send the request without `background: true`",
        ));
    }
    let mut metadata = Map::new();
    for key in ["previous_response_id", "conversation"] {
        if let Some(value) = view.decode::<Value>(key)? {
            metadata.insert(key.into(), value);
        }
    }
    let session_id = view
        .decode::<ClientMetadataView>("client_metadata")?
        .and_then(|m| m.session_id)
        .and_then(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned));
    let prompt = match view.items() {
        Some(items) => prompt(items),
        None => view
            .decode::<Value>("input")
            .ok()
            .flatten()
            .and_then(|v| v.as_str().filter(|t| !t.is_empty()).map(str::to_owned)),
    };
    Ok(RequestInfo {
        model,
        stream,
        prompt,
        session_id,
        metadata,
        add_stream_usage: false,
    })
}

/// The `input_text` parts of the last user message, unless tool outputs follow it (the
/// request continues a turn). Codex's `<environment_context>` messages are context, not
/// prompts.
fn prompt(items: &[&[u8]]) -> Option<String> {
    for raw in items.iter().rev() {
        let Ok(item) = super::scan::Body::read(raw, "") else {
            continue;
        };
        let (Ok(kind), Ok(role)) = (
            item.decode::<Cow<'_, str>>("type"),
            item.decode::<Cow<'_, str>>("role"),
        ) else {
            continue;
        };
        if kind.as_deref().is_some_and(|k| k.ends_with("_output")) {
            return None;
        }
        let is_message = kind.as_deref().is_none_or(|k| k == "message");
        if is_message && role.as_deref() == Some("user") {
            let text = Content::read(item.raw("content")?)?.text("input_text");
            if text
                .as_deref()
                .is_some_and(|t| t.starts_with("<environment_context>"))
            {
                continue;
            }
            return text;
        }
    }
    None
}

#[derive(Deserialize)]
struct EventView {
    #[serde(rename = "type")]
    kind: Option<String>,
    response: Option<ResponseView>,
    item: Option<ItemView>,
    /// `error` events carry the error's fields at the top level…
    message: Option<String>,
    code: Option<Value>,
    /// …or, from some servers, nested.
    error: Option<ErrorView>,
}

#[derive(Deserialize)]
struct ResponseView {
    id: Option<String>,
    status: Option<String>,
    output: Option<Vec<ItemView>>,
    usage: Option<UsageView>,
    error: Option<ErrorView>,
}

#[derive(Deserialize)]
struct ItemView {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<String>,
    call_id: Option<String>,
    name: Option<String>,
    namespace: Option<Value>,
    arguments: Option<Value>,
    input: Option<Value>,
    action: Option<Value>,
    role: Option<String>,
    phase: Option<String>,
    content: Option<Value>,
    summary: Option<Value>,
}

/// Observes one Responses response, blocking or streamed.
#[derive(Default)]
pub struct ResponsesObserver {
    obs: Observation,
    /// Whether items arrived one by one (`response.output_item.done`).
    items_streamed: bool,
    /// A terminal `response.*` event went by.
    ended: bool,
}

impl ResponsesObserver {
    fn on_item(&mut self, item: ItemView) {
        let kind = item.kind.clone().unwrap_or_default();
        match kind.as_str() {
            "function_call" => {
                let mut metadata = Map::new();
                if let Some(ns) = item.namespace.filter(|v| !v.is_null()) {
                    metadata.insert("namespace".into(), ns);
                }
                self.obs.tool_calls.push(ToolCall {
                    id: item.call_id,
                    name: item.name.unwrap_or_default(),
                    input: arguments(item.arguments),
                    metadata,
                });
            }
            "custom_tool_call" => self.obs.tool_calls.push(ToolCall {
                id: item.call_id,
                name: item.name.unwrap_or_default(),
                input: item.input.unwrap_or(Value::String(String::new())),
                metadata: type_metadata(&kind),
            }),
            "reasoning" => {
                for text in texts(item.summary.as_ref(), "summary_text") {
                    self.obs.thoughts.push(Thought {
                        content: text,
                        source: "reasoning_summary",
                    });
                }
            }
            "message" => {
                let assistant = item.role.as_deref().is_none_or(|r| r == "assistant");
                if assistant && item.phase.as_deref() == Some("commentary") {
                    let text = texts(item.content.as_ref(), "output_text").join("\n");
                    if !text.is_empty() {
                        self.obs.thoughts.push(Thought {
                            content: text,
                            source: "commentary",
                        });
                    }
                }
            }
            // Built-in and other tools: web_search_call, file_search_call, mcp_call, …
            other if other.ends_with("_call") => {
                let input = match (item.arguments, item.action, item.input) {
                    (Some(args), _, _) => arguments(Some(args)),
                    (None, Some(action), _) => action,
                    (None, None, Some(input)) => input,
                    (None, None, None) => Value::Object(Map::new()),
                };
                self.obs.tool_calls.push(ToolCall {
                    id: item.call_id.or(item.id),
                    name: item
                        .name
                        .unwrap_or_else(|| other.trim_end_matches("_call").to_owned()),
                    input,
                    metadata: type_metadata(other),
                });
            }
            _ => {}
        }
    }

    fn on_response(&mut self, response: ResponseView) {
        if let Some(id) = response.id {
            self.obs.response_id = Some(id);
        }
        if let Some(usage) = response.usage {
            self.obs.usage = Some(usage.into_usage());
        }
        if response.status.as_deref() == Some("failed") {
            let detail = response
                .error
                .map(|e| e.describe())
                .unwrap_or_else(|| "response failed".to_owned());
            self.obs.error = Some(detail);
        }
        if !self.items_streamed {
            for item in response.output.into_iter().flatten() {
                self.on_item(item);
            }
        }
    }

    fn on_stream_event(&mut self, ev: EventView) {
        match ev.kind.as_deref().unwrap_or("") {
            "response.created" | "response.queued" | "response.in_progress" => {
                if let Some(id) = ev.response.and_then(|r| r.id) {
                    self.obs.response_id = Some(id);
                }
            }
            "response.output_item.done" => {
                if let Some(item) = ev.item {
                    self.items_streamed = true;
                    self.on_item(item);
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.ended = true;
                if let Some(response) = ev.response {
                    self.on_response(response);
                }
                if ev.kind.as_deref() == Some("response.failed") && self.obs.error.is_none() {
                    self.obs.error = Some("response failed".to_owned());
                }
            }
            "error" => {
                let detail = match ev.error {
                    Some(e) => e.describe(),
                    None => ErrorView::from_parts(ev.code, ev.message).describe(),
                };
                self.obs.error = Some(detail);
            }
            _ => {}
        }
    }
}

/// Events whose data the records need; every other named event is relayed unparsed.
fn is_observed(event_name: &[u8]) -> bool {
    matches!(
        event_name,
        b"response.created"
            | b"response.queued"
            | b"response.in_progress"
            | b"response.output_item.done"
            | b"response.completed"
            | b"response.incomplete"
            | b"response.failed"
            | b"error"
    )
}

impl Observer for ResponsesObserver {
    fn on_event(&mut self, event: &SseEvent) -> EventAction {
        if event.event_name().is_some_and(|t| !is_observed(t)) {
            return EventAction::Forward;
        }
        if let Some(data) = event.data()
            && let Ok(ev) = serde_json::from_str::<EventView>(&data)
        {
            self.on_stream_event(ev);
        }
        EventAction::Forward
    }

    fn on_body(&mut self, body: &[u8]) {
        if let Some(response) = super::read_body::<ResponseView>(body) {
            self.on_response(response);
        }
    }

    fn take(&mut self) -> Observation {
        self.items_streamed = false;
        std::mem::take(&mut self.obs)
    }

    fn finished(&self) -> bool {
        self.ended
    }
}

/// Function-call arguments: a JSON string parsed, or already structured.
fn arguments(value: Option<Value>) -> Value {
    match value {
        Some(Value::String(raw)) => parse_arguments(&raw),
        Some(Value::Null) | None => Value::Object(Map::new()),
        Some(other) => other,
    }
}

fn type_metadata(kind: &str) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("type".into(), Value::String(kind.to_owned()));
    metadata
}

/// The non-empty `text` of each part of type `part_type`.
fn texts(parts: Option<&Value>, part_type: &str) -> Vec<String> {
    let Some(Value::Array(parts)) = parts else {
        return Vec::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some(part_type))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_prompts_metadata_and_refuses_background() {
        let info = inspect(br#"{"model":"m","input":"hi","previous_response_id":"resp_1","conversation":{"id":"conv_1"}}"#).unwrap();
        assert_eq!(info.prompt.as_deref(), Some("hi"));
        assert_eq!(
            Value::Object(info.metadata),
            serde_json::json!({"previous_response_id":"resp_1","conversation":{"id":"conv_1"}})
        );
        let codex = br#"{"model":"m","stream":true,"client_metadata":{"session_id":"s1"},"input":[
            {"type":"message","role":"developer","content":[{"type":"input_text","text":"d"}]},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"say hi"}]},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>x</environment_context>"}]}]}"#;
        let info = inspect(codex).unwrap();
        assert_eq!(info.prompt.as_deref(), Some("say hi"));
        assert_eq!(info.session_id.as_deref(), Some("s1"));
        let continued = br#"{"model":"m","input":[{"role":"user","content":"q"},
            {"type":"function_call","call_id":"c","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"c","output":"r"}]}"#;
        assert_eq!(inspect(continued).unwrap().prompt, None);
        let err = inspect(br#"{"model":"m","background":true}"#).unwrap_err();
        assert!(err.message.starts_with("background:"));
    }

    #[test]
    fn streams_without_event_lines_are_observed_from_data() {
        let mut o = ResponsesObserver::default();
        let ev = |d: &str| SseEvent::new(format!("data: {d}\n\n").into());
        o.on_event(&ev(r#"{"type":"response.output_text.delta","delta":"x"}"#));
        o.on_event(&ev(
            r#"{"type":"response.output_item.done","item":{"type":"reasoning","summary":[{"type":"summary_text","text":"t"}]}}"#,
        ));
        o.on_event(&ev(
            r#"{"type":"response.failed","response":{"id":"resp_9","status":"failed","output":[],"error":null}}"#,
        ));
        let obs = o.take();
        assert_eq!(obs.response_id.as_deref(), Some("resp_9"));
        assert_eq!(obs.thoughts.len(), 1);
        assert_eq!(obs.error.as_deref(), Some("response failed"));
    }

    #[test]
    fn items_are_recorded_once() {
        let mut o = ResponsesObserver::default();
        let ev = |t: &str, d: &str| SseEvent::new(format!("event: {t}\ndata: {d}\n\n").into());
        o.on_event(&ev(
            "response.created",
            r#"{"type":"response.created","response":{"id":"resp_1","output":[]}}"#,
        ));
        o.on_event(&ev("response.output_text.delta", "not even json"));
        o.on_event(&ev("response.output_item.done", r#"{"type":"response.output_item.done","item":{"type":"custom_tool_call","call_id":"call_1","name":"apply_patch","input":"*** Begin Patch"}}"#));
        o.on_event(&ev("response.completed", r#"{"type":"response.completed","response":{"id":"resp_1","status":"completed","output":[{"type":"custom_tool_call","call_id":"call_1","name":"apply_patch","input":"*** Begin Patch"}],"usage":{"input_tokens":3,"output_tokens":2}}}"#));
        let obs = o.take();
        assert_eq!(obs.tool_calls.len(), 1);
        assert_eq!(
            obs.tool_calls[0].input,
            Value::String("*** Begin Patch".into())
        );
        assert_eq!(obs.usage.unwrap().output, 2);
        assert_eq!(obs.error, None);
    }
}
