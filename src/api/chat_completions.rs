//! OpenAI Chat Completions (`POST /v1/chat/completions`): request view, the one body edit
//! (asking a stream for usage), and the response observer.
//!
//! A stream reports usage only when the request sets `stream_options.include_usage`. When
//! the client did not, the bridge sets it and hides the extra usage-only chunk (empty
//! `choices`) from the client; every other chunk is relayed as received.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::openai::{ErrorView, UsageView, read_model, read_stream};
use super::scan::Content;
use super::{
    BadRequest, EventAction, Needle, Observation, Observer, RequestInfo, ToolCall, parse_arguments,
};
use memchr::memmem::Finder;

static TOOL_CALLS: Needle = Needle::new(|| Finder::new(b"\"tool_calls\""));
static FUNCTION_CALL: Needle = Needle::new(|| Finder::new(b"\"function_call\""));
static ERROR: Needle = Needle::new(|| Finder::new(b"\"error\""));
static USAGE: Needle = Needle::new(|| Finder::new(b"\"usage\""));
static NO_USAGE: Needle = Needle::new(|| Finder::new(b"\"usage\":null"));
use crate::sse::SseEvent;

#[derive(Deserialize)]
struct StreamOptionsView {
    include_usage: Option<Value>,
}

/// Reads what the bridge needs from a Chat Completions request; the body is scanned
/// ([`super::scan`]) and only these fields and the last user message are decoded.
pub fn inspect(body: &[u8]) -> Result<RequestInfo, BadRequest> {
    super::require_object(body)?;
    let view = super::scan::Body::read(body, "messages")?;
    let model = read_model(view.decode("model")?)?;
    let stream = read_stream(view.decode("stream")?)?;
    let client_asked_usage = view
        .decode::<StreamOptionsView>("stream_options")?
        .and_then(|o| o.include_usage)
        .is_some_and(|v| v == Value::Bool(true));
    if view.items().is_none() && view.decode::<Value>("messages")?.is_some() {
        return Err(BadRequest::new("messages: expected an array"));
    }
    Ok(RequestInfo {
        model,
        stream,
        prompt: view.items().and_then(last_user_prompt),
        session_id: None,
        metadata: Map::new(),
        add_stream_usage: stream && !client_asked_usage,
    })
}

/// The text parts of the last user message, unless tool results follow it (then the
/// request continues a turn and carries no new prompt).
fn last_user_prompt(messages: &[&[u8]]) -> Option<String> {
    for raw in messages.iter().rev() {
        let Ok(message) = super::scan::Body::read(raw, "") else {
            continue;
        };
        let Ok(role) = message.decode::<Cow<'_, str>>("role") else {
            continue;
        };
        match role.as_deref() {
            Some("user") => {
                return Content::read(message.raw("content")?)?.text("text");
            }
            Some("tool" | "function") => return None,
            _ => {}
        }
    }
    None
}

/// The body with `stream_options.include_usage` set, every other key and their order kept.
pub fn with_stream_usage(body: &[u8]) -> Result<Bytes, BadRequest> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| BadRequest::new(format!("request body is not valid JSON: {e}")))?;
    let Some(root) = value.as_object_mut() else {
        return Err(BadRequest::new("request body must be a JSON object"));
    };
    let options = root
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !options.is_object() {
        *options = Value::Object(Map::new());
    }
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".into(), Value::Bool(true));
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| BadRequest::new(format!("request body cannot be re-encoded: {e}")))
}

#[derive(Deserialize)]
struct CompletionView {
    id: Option<String>,
    choices: Option<Vec<ChoiceView>>,
    usage: Option<UsageView>,
    error: Option<ErrorView>,
}

#[derive(Deserialize)]
struct ChoiceView {
    index: Option<usize>,
    /// Streamed chunks.
    delta: Option<MessageOutView>,
    /// Blocking bodies.
    message: Option<MessageOutView>,
}

#[derive(Deserialize)]
struct MessageOutView {
    tool_calls: Option<Vec<ToolCallView>>,
    /// The legacy single call.
    function_call: Option<FunctionView>,
}

#[derive(Deserialize)]
struct ToolCallView {
    index: Option<usize>,
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: Option<FunctionView>,
    custom: Option<CustomView>,
}

#[derive(Deserialize)]
struct FunctionView {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct CustomView {
    name: Option<String>,
    input: Option<String>,
}

/// A streamed call being assembled from its deltas.
#[derive(Default)]
struct PendingCall {
    id: Option<String>,
    custom: bool,
    name: String,
    arguments: String,
}

impl PendingCall {
    fn apply(&mut self, delta: ToolCallView) {
        if self.id.is_none() {
            self.id = delta.id;
        }
        self.custom |= delta.kind.as_deref() == Some("custom") || delta.custom.is_some();
        let (name, piece) = match (delta.function, delta.custom) {
            (Some(f), _) => (f.name, f.arguments),
            (None, Some(c)) => (c.name, c.input),
            (None, None) => (None, None),
        };
        if let Some(name) = name.filter(|_| self.name.is_empty()) {
            self.name = name;
        }
        self.arguments.push_str(piece.as_deref().unwrap_or(""));
    }

    fn finish(self) -> ToolCall {
        let (input, metadata) = if self.custom {
            let mut metadata = Map::new();
            metadata.insert("type".into(), Value::String("custom".into()));
            (Value::String(self.arguments), metadata)
        } else {
            (parse_arguments(&self.arguments), Map::new())
        };
        ToolCall {
            id: self.id,
            name: self.name,
            input,
            metadata,
        }
    }
}

/// Observes one Chat Completions response, blocking or streamed.
#[derive(Default)]
pub struct ChatObserver {
    obs: Observation,
    /// Hide the usage-only chunk: the bridge asked for it, the client did not.
    hide_usage_chunk: bool,
    /// Streamed calls by (choice index, call index), in that order.
    calls: BTreeMap<(usize, usize), PendingCall>,
    /// `data: [DONE]` went by.
    done: bool,
}

impl ChatObserver {
    /// An observer for a request described by `info`.
    pub fn new(info: &RequestInfo) -> Self {
        Self {
            hide_usage_chunk: info.add_stream_usage,
            ..Self::default()
        }
    }

    fn on_message(&mut self, message: MessageOutView) {
        for call in message.tool_calls.into_iter().flatten() {
            let mut pending = PendingCall::default();
            pending.apply(call);
            self.obs.tool_calls.push(pending.finish());
        }
        if let Some(f) = message.function_call {
            self.obs.tool_calls.push(ToolCall {
                id: None,
                name: f.name.unwrap_or_default(),
                input: parse_arguments(f.arguments.as_deref().unwrap_or("")),
                metadata: Map::new(),
            });
        }
    }

    /// Folds one chunk in; whether the client should see it.
    fn on_chunk(&mut self, chunk: CompletionView) -> EventAction {
        if self.obs.response_id.is_none() {
            self.obs.response_id = chunk.id;
        }
        if let Some(e) = chunk.error {
            self.obs.error = Some(e.describe());
        }
        let no_choices = chunk.choices.as_ref().is_none_or(Vec::is_empty);
        for choice in chunk.choices.into_iter().flatten() {
            let Some(delta) = choice.delta else { continue };
            let index = choice.index.unwrap_or(0);
            for call in delta.tool_calls.into_iter().flatten() {
                let key = (index, call.index.unwrap_or(0));
                self.calls.entry(key).or_default().apply(call);
            }
            if let Some(f) = delta.function_call {
                let legacy = ToolCallView {
                    index: None,
                    id: None,
                    kind: None,
                    function: Some(f),
                    custom: None,
                };
                self.calls
                    .entry((index, usize::MAX))
                    .or_default()
                    .apply(legacy);
            }
        }
        match chunk.usage {
            Some(usage) => {
                self.obs.usage = Some(usage.into_usage());
                if self.hide_usage_chunk && no_choices {
                    return EventAction::Drop;
                }
                EventAction::Forward
            }
            None => EventAction::Forward,
        }
    }
}

impl Observer for ChatObserver {
    fn on_event(&mut self, event: &SseEvent) -> EventAction {
        let raw = &event.raw[..];
        // `data: [DONE]` (and its line ending) is short; a delta never is.
        if raw.len() <= 24 && event.data().as_deref() == Some("[DONE]") {
            self.done = true;
            return EventAction::Forward;
        }
        // Content deltas are most of a stream and say nothing the records need.
        let plain_delta = self.obs.response_id.is_some()
            && !TOOL_CALLS.is_in(raw)
            && !FUNCTION_CALL.is_in(raw)
            && !ERROR.is_in(raw)
            && (!USAGE.is_in(raw) || NO_USAGE.is_in(raw));
        if plain_delta {
            return EventAction::Forward;
        }
        let Some(data) = event.data() else {
            return EventAction::Forward;
        };
        match serde_json::from_str::<CompletionView>(&data) {
            Ok(chunk) => self.on_chunk(chunk),
            // `[DONE]`, comments and anything malformed pass as received.
            Err(_) => EventAction::Forward,
        }
    }

    fn on_body(&mut self, body: &[u8]) {
        let Some(completion) = super::read_body::<CompletionView>(body) else {
            return;
        };
        self.obs.response_id = completion.id;
        self.obs.usage = completion.usage.map(UsageView::into_usage);
        if let Some(e) = completion.error {
            self.obs.error = Some(e.describe());
        }
        let mut choices = completion.choices.unwrap_or_default();
        choices.sort_by_key(|c| c.index.unwrap_or(0));
        for message in choices.into_iter().filter_map(|c| c.message) {
            self.on_message(message);
        }
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn take(&mut self) -> Observation {
        let calls = std::mem::take(&mut self.calls);
        self.obs
            .tool_calls
            .extend(calls.into_values().map(PendingCall::finish));
        std::mem::take(&mut self.obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent {
        SseEvent::new(Bytes::from(format!("data: {data}\n\n")))
    }

    #[test]
    fn inspect_reads_prompt_and_usage_request() {
        let body = br#"{"model":"gpt-x","stream":true,"messages":[{"role":"system","content":"s"},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"u"}},{"type":"text","text":"b"}]}]}"#;
        let info = inspect(body).unwrap();
        assert_eq!(info.prompt.as_deref(), Some("a\nb"));
        assert!(info.add_stream_usage);
        let asked =
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        assert!(!inspect(asked).unwrap().add_stream_usage);
        assert!(!inspect(br#"{"model":"m"}"#).unwrap().add_stream_usage);
        let continued = br#"{"model":"m","messages":[{"role":"user","content":"q"},
            {"role":"assistant","tool_calls":[]},{"role":"tool","tool_call_id":"c","content":"r"}]}"#;
        assert_eq!(inspect(continued).unwrap().prompt, None);
        assert!(inspect(br#"{"stream":true}"#).is_err());
    }

    #[test]
    fn stream_usage_edit_keeps_order_and_unknown_fields() {
        let body = br#"{"model":"m","stream":true,"stream_options":{"x":1},"zz":{"b":1,"a":2}}"#;
        let out = with_stream_usage(body).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"m","stream":true,"stream_options":{"x":1,"include_usage":true},"zz":{"b":1,"a":2}}"#
        );
    }

    #[test]
    fn streamed_parallel_calls_and_hidden_usage() {
        let info = RequestInfo {
            add_stream_usage: true,
            ..RequestInfo::default()
        };
        let mut o = ChatObserver::new(&info);
        let chunks = [
            r#"{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}},{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{\"y\""}}]}}],"usage":null}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}},{"index":1,"function":{"arguments":":2}"}}]}}],"usage":null}"#,
        ];
        for c in chunks {
            assert_eq!(o.on_event(&ev(c)), EventAction::Forward);
        }
        let usage = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        assert_eq!(o.on_event(&ev(usage)), EventAction::Drop);
        assert_eq!(o.on_event(&ev("[DONE]")), EventAction::Forward);
        let obs = o.take();
        assert_eq!(obs.response_id.as_deref(), Some("c1"));
        let calls: Vec<_> = obs
            .tool_calls
            .iter()
            .map(|c| (c.id.clone().unwrap(), c.input.clone()))
            .collect();
        assert_eq!(
            calls,
            vec![
                ("call_a".to_owned(), serde_json::json!({"x":1})),
                ("call_b".to_owned(), serde_json::json!({"y":2}))
            ]
        );
        assert_eq!(obs.usage.unwrap().input, 5);
    }

    fn blocking(body: &str) -> Observation {
        let mut o = ChatObserver::new(&RequestInfo::default());
        o.on_body(body.as_bytes());
        o.take()
    }

    #[test]
    fn a_blocking_text_answer_gives_its_id_and_usage_and_no_calls() {
        // The answer's text talks about tool calls: escaped quotes are not the structure.
        let obs = blocking(
            r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,
            "message":{"role":"assistant","content":"use \"tool_calls\": [] or \"function_call\""},
            "finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":16,
            "total_tokens":27,"prompt_tokens_details":{"cached_tokens":3},
            "completion_tokens_details":{"reasoning_tokens":5}}}"#,
        );
        assert_eq!(obs.response_id.as_deref(), Some("chatcmpl-1"));
        let usage = obs.usage.unwrap();
        assert_eq!((usage.input, usage.cache_read, usage.output), (8, 3, 16));
        assert_eq!(
            serde_json::to_value(&usage.extra).unwrap(),
            serde_json::json!({"reasoning_tokens":5,"total_tokens":27})
        );
        assert!(obs.tool_calls.is_empty());
        assert_eq!(obs.error, None);
    }

    #[test]
    fn a_blocking_answer_gives_its_calls_in_choice_order() {
        let obs = blocking(
            r#"{"id":"c2","choices":[
            {"index":1,"message":{"role":"assistant","function_call":{"name":"legacy","arguments":"{\"a\":1}"}}},
            {"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
              {"id":"call_x","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}"#,
        );
        let calls: Vec<_> = obs
            .tool_calls
            .iter()
            .map(|c| (c.id.as_deref(), c.name.as_str(), c.input.clone()))
            .collect();
        assert_eq!(
            calls,
            vec![
                (Some("call_x"), "f", serde_json::json!({"x":1})),
                (None, "legacy", serde_json::json!({"a":1}))
            ]
        );
        assert!(obs.usage.is_none());
    }

    #[test]
    fn a_body_that_is_not_a_completion_is_not_observed() {
        for bad in [r#"{"id":"c4","#, "[1]", ""] {
            let obs = blocking(bad);
            assert!(obs.response_id.is_none() && obs.usage.is_none(), "{bad}");
        }
    }
}
