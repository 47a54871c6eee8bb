//! Reading SSE transcripts in tests: what the bridge relayed, or what a fixture holds.

use serde_json::Value;

/// One SSE event: its `event:` name and its `data:` payload (lines joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (Chat Completions chunks have none).
    pub name: Option<String>,
    /// The `data:` payload.
    pub data: String,
}

impl SseEvent {
    /// The payload parsed as JSON (`Null` for `[DONE]` or anything that is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// Parses an SSE transcript: LF or CRLF line ends, `:` comments skipped, one optional space
/// after the field colon, events without `event:` or `data:` dropped.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if name.is_some() || !data.is_empty() {
            events.push(SseEvent {
                name,
                data: data.join("\n"),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_multiline_data_comments_and_crlf() {
        let events =
            parse_sse(": hi\r\n\r\nevent: a\r\ndata:{\"x\":\r\ndata: 1}\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name.as_deref(), Some("a"));
        assert_eq!(events[0].json(), serde_json::json!({"x": 1}));
        assert_eq!(events[1].data, "[DONE]");
        assert!(events[1].json().is_null());
    }
}
