//! Anthropic Messages (`POST /v1/messages`): request view and response observer.
//!
//! Usage: input and cache counts come from `message_start`; `message_delta` carries
//! cumulative totals, so its values replace (never add to) what was seen before.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use super::scan::{Content, join_lines};
use super::{
    BadRequest, EventAction, Observation, Observer, RequestInfo, Thought, ToolCall, Usage,
    parse_arguments,
};
use crate::record::TokenCounts;
use crate::sse::SseEvent;

#[derive(Deserialize)]
struct MetadataView {
    #[serde(default)]
    user_id: Option<Value>,
}

/// Reads what the bridge needs from a Messages request: the structure is scanned
/// ([`super::scan`]) and only `model`, `stream`, `metadata` and the last user message are
/// decoded, so the system prompt, tools and earlier turns are skipped, not parsed.
pub fn inspect(body: &[u8]) -> Result<RequestInfo, BadRequest> {
    super::require_object(body)?;
    let view = super::scan::Body::read(body, "messages")?;
    let model = match view.decode::<Value>("model")? {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => return Err(BadRequest::new("model: must be a non-empty string")),
        None => return Err(BadRequest::new("model: Field required")),
    };
    let stream = match view.decode::<Value>("stream")? {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(BadRequest::new("stream: Input should be a valid boolean")),
    };
    if view.items().is_none() && view.decode::<Value>("messages")?.is_some() {
        return Err(BadRequest::new("messages: Input should be a valid list"));
    }
    let session_id = view
        .decode::<MetadataView>("metadata")
        .ok()
        .flatten()
        .and_then(|m| m.user_id)
        .and_then(|v| v.as_str().and_then(super::client::session_from_user_id));
    Ok(RequestInfo {
        model,
        stream,
        prompt: view.items().and_then(last_user_prompt),
        session_id,
        metadata: Map::new(),
        add_stream_usage: false,
    })
}

/// The text of the last user message: its string content, or its text blocks joined with
/// `\n`. Claude Code adds `<system-reminder>` blocks (context, not what the user typed): they
/// are left out. A user message holding only tool results is a continuation, not a prompt.
fn last_user_prompt(messages: &[&[u8]]) -> Option<String> {
    let content = messages.iter().rev().find_map(|raw| {
        let message = super::scan::Body::read(raw, "").ok()?;
        let role = message.decode::<Cow<'_, str>>("role").ok()??;
        (role == "user").then(|| message.raw("content"))
    })??;
    match Content::read(content)? {
        Content::Text(s) => Some(s),
        Content::Parts(blocks) => {
            let texts: Vec<Cow<'_, str>> = blocks
                .iter()
                .filter(|b| b.kind == "text")
                .filter_map(|b| without_system_reminders(&b.text))
                .collect();
            (!texts.is_empty()).then(|| join_lines(texts.iter().map(|t| &**t)))
        }
    }
}

const REMINDER_OPEN: &str = "<system-reminder>";
const REMINDER_CLOSE: &str = "</system-reminder>";

/// The text with its `<system-reminder>…</system-reminder>` spans removed: verbatim when it
/// has none, trimmed when it had some, `None` when nothing else is left.
fn without_system_reminders(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(REMINDER_OPEN) {
        return (!text.is_empty()).then_some(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(REMINDER_OPEN) {
        out.push_str(&rest[..start]);
        match rest[start..].find(REMINDER_CLOSE) {
            Some(end) => rest = &rest[start + end + REMINDER_CLOSE.len()..],
            // An unclosed reminder runs to the end of the block.
            None => rest = "",
        }
    }
    out.push_str(rest);
    let kept = out.trim();
    (!kept.is_empty()).then(|| Cow::Owned(kept.to_owned()))
}

#[derive(Deserialize, Default)]
struct UsageView {
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cache_creation_input_tokens: Option<i64>,
    cache_read_input_tokens: Option<i64>,
    cache_creation: Option<TokenCounts>,
    server_tool_use: Option<TokenCounts>,
}

impl UsageView {
    /// Folds these (cumulative) counts into `usage`: present fields replace earlier ones.
    fn apply(self, usage: &mut Usage) {
        if let Some(v) = self.input_tokens {
            usage.input = v;
        }
        if let Some(v) = self.output_tokens {
            usage.output = v;
        }
        if let Some(v) = self.cache_creation_input_tokens {
            usage.cache_write = v;
        }
        if let Some(v) = self.cache_read_input_tokens {
            usage.cache_read = v;
        }
        for nested in [self.cache_creation, self.server_tool_use]
            .into_iter()
            .flatten()
        {
            for (k, v) in nested {
                usage.extra.set(k, v);
            }
        }
    }
}

#[derive(Deserialize)]
struct MessageView {
    id: Option<String>,
    #[serde(default)]
    content: Vec<BlockView>,
    usage: Option<UsageView>,
}

#[derive(Deserialize)]
struct BlockView {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
    thinking: Option<String>,
}

#[derive(Deserialize)]
struct DeltaView {
    #[serde(rename = "type")]
    kind: Option<String>,
    partial_json: Option<String>,
    thinking: Option<String>,
    #[allow(dead_code, reason = "text deltas are skipped without allocating")]
    text: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ErrorView {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct EventView {
    #[serde(rename = "type")]
    kind: String,
    message: Option<MessageView>,
    index: Option<usize>,
    content_block: Option<BlockView>,
    delta: Option<DeltaView>,
    usage: Option<UsageView>,
    error: Option<ErrorView>,
}

enum Block {
    ToolUse {
        id: Option<String>,
        name: String,
        json: String,
        metadata: Map<String, Value>,
    },
    Thinking(String),
}

/// A client's own tool call (`tool_use`) has no metadata; a tool the provider runs itself
/// (`server_tool_use` such as web search, `mcp_tool_use` of the MCP connector) is recorded
/// too, with its block type, so the audit shows every tool the model used.
fn tool_metadata(kind: &str) -> Map<String, Value> {
    let mut metadata = Map::new();
    if kind != "tool_use" {
        metadata.insert("type".into(), Value::String(kind.to_owned()));
    }
    metadata
}

/// Observes one Messages response, blocking or streamed.
#[derive(Default)]
pub struct MessagesObserver {
    obs: Observation,
    open: HashMap<usize, Block>,
    /// `message_stop` went by.
    stopped: bool,
}

impl MessagesObserver {
    fn usage(&mut self) -> &mut Usage {
        self.obs.usage.get_or_insert_with(Usage::default)
    }

    fn on_block(&mut self, block: BlockView) {
        match block.kind.as_str() {
            kind @ ("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                self.obs.tool_calls.push(ToolCall {
                    id: block.id,
                    name: block.name.unwrap_or_default(),
                    input: block.input.unwrap_or(Value::Object(Map::new())),
                    metadata: tool_metadata(kind),
                })
            }
            "thinking" => {
                if let Some(text) = block.thinking.filter(|t| !t.is_empty()) {
                    self.obs.thoughts.push(Thought {
                        content: text,
                        source: "thinking",
                    });
                }
            }
            _ => {}
        }
    }

    fn on_stream_event(&mut self, ev: EventView) {
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(msg) = ev.message {
                    self.obs.response_id = msg.id;
                    if let Some(u) = msg.usage {
                        u.apply(self.usage());
                    }
                }
            }
            "content_block_start" => {
                let (Some(index), Some(block)) = (ev.index, ev.content_block) else {
                    return;
                };
                let open = match block.kind.as_str() {
                    kind @ ("tool_use" | "server_tool_use" | "mcp_tool_use") => Block::ToolUse {
                        id: block.id,
                        name: block.name.unwrap_or_default(),
                        json: String::new(),
                        metadata: tool_metadata(kind),
                    },
                    "thinking" => Block::Thinking(block.thinking.unwrap_or_default()),
                    _ => return,
                };
                self.open.insert(index, open);
            }
            "content_block_delta" => {
                let (Some(index), Some(delta)) = (ev.index, ev.delta) else {
                    return;
                };
                match (self.open.get_mut(&index), delta.kind.as_deref()) {
                    (Some(Block::ToolUse { json, .. }), Some("input_json_delta")) => {
                        json.push_str(delta.partial_json.as_deref().unwrap_or(""));
                    }
                    (Some(Block::Thinking(text)), Some("thinking_delta")) => {
                        text.push_str(delta.thinking.as_deref().unwrap_or(""));
                    }
                    _ => {}
                }
            }
            "content_block_stop" => match ev.index.and_then(|i| self.open.remove(&i)) {
                Some(Block::ToolUse {
                    id,
                    name,
                    json,
                    metadata,
                }) => self.obs.tool_calls.push(ToolCall {
                    id,
                    name,
                    input: parse_arguments(&json),
                    metadata,
                }),
                Some(Block::Thinking(text)) if !text.is_empty() => {
                    self.obs.thoughts.push(Thought {
                        content: text,
                        source: "thinking",
                    })
                }
                _ => {}
            },
            "message_delta" => {
                if let Some(u) = ev.usage {
                    u.apply(self.usage());
                }
            }
            "message_stop" => self.stopped = true,
            "error" => {
                let detail = ev.error.map(|e| {
                    format!(
                        "{}: {}",
                        e.kind.unwrap_or_default(),
                        e.message.unwrap_or_default()
                    )
                });
                self.obs.error = Some(detail.unwrap_or_else(|| "error".to_owned()));
            }
            _ => {}
        }
    }
}

impl Observer for MessagesObserver {
    fn on_event(&mut self, event: &SseEvent) -> EventAction {
        // Events that say nothing the records need are not parsed: text deltas (most of a
        // stream), the start of a text block, the end of a block when no tool use or
        // thinking block is open, pings.
        match event.event_name() {
            Some(b"content_block_delta") if memchr_text_delta(&event.raw) => {
                return EventAction::Forward;
            }
            Some(b"content_block_start") if memchr_text_block(&event.raw) => {
                return EventAction::Forward;
            }
            Some(b"content_block_stop") if self.open.is_empty() => return EventAction::Forward,
            Some(b"ping") => return EventAction::Forward,
            Some(b"message_stop") => {
                self.stopped = true;
                return EventAction::Forward;
            }
            _ => {}
        }
        if let Some(data) = event.data()
            && let Ok(ev) = serde_json::from_str::<EventView>(&data)
        {
            self.on_stream_event(ev);
        }
        EventAction::Forward
    }

    fn on_body(&mut self, body: &[u8]) {
        let Some(msg) = super::read_body::<MessageView>(body) else {
            return;
        };
        self.obs.response_id = msg.id;
        if let Some(u) = msg.usage {
            u.apply(self.usage());
        }
        for block in msg.content {
            self.on_block(block);
        }
    }

    fn take(&mut self) -> Observation {
        self.open.clear();
        std::mem::take(&mut self.obs)
    }

    fn finished(&self) -> bool {
        self.stopped
    }
}

/// Whether a `content_block_start` opens a text block. Inside a JSON string a quote is
/// escaped, so the needle can only be the event's own structure.
fn memchr_text_block(raw: &[u8]) -> bool {
    static TEXT_BLOCK: super::Needle =
        super::Needle::new(|| memchr::memmem::Finder::new(b"\"content_block\":{\"type\":\"text\""));
    TEXT_BLOCK.is_in(raw)
}

fn memchr_text_delta(raw: &[u8]) -> bool {
    static TEXT_DELTA: super::Needle =
        super::Needle::new(|| memchr::memmem::Finder::new(b"\"type\":\"text_delta\""));
    TEXT_DELTA.is_in(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_model_stream_prompt_session() {
        let body = br#"{"model":"claude-x","stream":true,"metadata":{"user_id":"user_1_account_2_session_s-9"},
            "messages":[{"role":"user","content":"first"},{"role":"assistant","content":"ok"},
            {"role":"user","content":[{"type":"text","text":"<system-reminder>x</system-reminder>"},{"type":"text","text":"do it"}]}]}"#;
        let info = inspect(body).unwrap();
        assert_eq!(info.model, "claude-x");
        assert!(info.stream);
        assert_eq!(info.prompt.as_deref(), Some("do it"));
        assert_eq!(info.session_id.as_deref(), Some("s-9"));
    }

    #[test]
    fn prompt_joins_text_blocks_without_system_reminders() {
        let prompt = |content: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":{content}}}]}}"#);
            inspect(body.as_bytes()).unwrap().prompt
        };
        assert_eq!(
            prompt(r#"[{"type":"text","text":"<system-reminder>ctx</system-reminder>"},{"type":"text","text":"first part"},{"type":"image","source":{}},{"type":"text","text":"second part"},{"type":"text","text":"<system-reminder>\nlate\n</system-reminder>"}]"#).as_deref(),
            Some("first part\nsecond part")
        );
        assert_eq!(
            prompt(r#"[{"type":"text","text":"<system-reminder>a</system-reminder>\nwhat I typed\n<system-reminder>b"}]"#).as_deref(),
            Some("what I typed")
        );
        assert_eq!(
            prompt(r#"[{"type":"text","text":"  spaced  "}]"#).as_deref(),
            Some("  spaced  ")
        );
        assert_eq!(
            prompt(r#"[{"type":"text","text":"<system-reminder>only</system-reminder>"}]"#),
            None
        );
    }

    #[test]
    fn inspect_rejects_bad_bodies() {
        assert!(
            inspect(b"not json")
                .unwrap_err()
                .message
                .contains("not valid JSON")
        );
        assert_eq!(inspect(b"{}").unwrap_err().message, "model: Field required");
        assert!(inspect(br#"{"model":"m","stream":"yes"}"#).is_err());
        let tool_only = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}]}"#;
        assert_eq!(inspect(tool_only).unwrap().prompt, None);
    }

    #[test]
    fn stream_usage_is_not_double_counted() {
        let mut o = MessagesObserver::default();
        let ev = |s: &str| SseEvent::new(bytes::Bytes::from(s.to_owned()));
        o.on_event(&ev("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":2,\"output_tokens\":1}}}\n\n"));
        o.on_event(&ev("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Bash\",\"input\":{}}}\n\n"));
        o.on_event(&ev("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"));
        o.on_event(&ev("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n"));
        o.on_event(&ev(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        ));
        o.on_event(&ev("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":42}}\n\n"));
        let obs = o.take();
        assert_eq!(obs.response_id.as_deref(), Some("msg_1"));
        let u = obs.usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (10, 42, 5, 2)
        );
        assert_eq!(obs.tool_calls[0].input, serde_json::json!({"a": 1}));
    }

    #[test]
    fn events_left_unparsed_change_nothing_the_records_need() {
        use serde_json::{Value, json};
        // The event's name is its data's type, as Anthropic sends them.
        let ev = |data: Value| {
            let raw = format!(
                "event: {}\ndata: {data}\n\n",
                data["type"].as_str().unwrap()
            );
            SseEvent::new(bytes::Bytes::from(raw))
        };
        let start = |index: u32, block: Value| {
            ev(json!({"type": "content_block_start", "index": index, "content_block": block}))
        };
        let delta = |index: u32, delta: Value| {
            ev(json!({"type": "content_block_delta", "index": index, "delta": delta}))
        };
        let stop = |index: u32| ev(json!({"type": "content_block_stop", "index": index}));
        let stream = [
            start(0, json!({"type": "text", "text": ""})),
            delta(0, json!({"type": "text_delta", "text": "let me look"})),
            stop(0),
            ev(json!({"type": "ping"})),
            start(1, json!({"type": "thinking", "thinking": ""})),
            delta(1, json!({"type": "thinking_delta", "thinking": "hmm"})),
            stop(1),
            start(
                2,
                json!({"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}}),
            ),
            delta(2, json!({"type": "input_json_delta", "partial_json": "{}"})),
            stop(2),
        ];
        let mut o = MessagesObserver::default();
        for event in &stream {
            assert_eq!(o.on_event(event), EventAction::Forward);
        }
        assert!(!o.finished());
        o.on_event(&ev(json!({"type": "message_stop"})));
        assert!(o.finished());
        let obs = o.take();
        assert_eq!(obs.thoughts.len(), 1);
        assert_eq!(obs.thoughts[0].content, "hmm");
        assert_eq!(obs.tool_calls.len(), 1);
        assert_eq!(obs.tool_calls[0].name, "Read");
    }
}
