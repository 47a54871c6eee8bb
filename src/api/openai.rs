//! What OpenAI's Chat Completions and Responses APIs share: the request fields read the
//! same way, the usage shape (`*_tokens` plus two `*_tokens_details` maps), and the
//! error object.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{BadRequest, Usage};
use crate::record::{TokenCounts, prefixed_count_name};

/// Reads `model`: a non-empty string.
pub(crate) fn read_model(model: Option<Value>) -> Result<String, BadRequest> {
    match model {
        Some(Value::String(m)) if !m.is_empty() => Ok(m),
        Some(Value::Null) | None => Err(BadRequest::new("you must provide a model parameter")),
        Some(_) => Err(BadRequest::new("model: must be a non-empty string")),
    }
}

/// Reads `stream`: a boolean, absent or null meaning `false`.
pub(crate) fn read_stream(stream: Option<Value>) -> Result<bool, BadRequest> {
    match stream {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(BadRequest::new("stream: expected a boolean")),
    }
}

/// Token counts as both OpenAI APIs report them, under either API's field names.
#[derive(Deserialize, Default)]
pub(crate) struct UsageView {
    #[serde(alias = "prompt_tokens")]
    input_tokens: Option<i64>,
    #[serde(alias = "completion_tokens")]
    output_tokens: Option<i64>,
    total_tokens: Option<i64>,
    #[serde(alias = "prompt_tokens_details")]
    input_tokens_details: Option<TokenCounts>,
    #[serde(alias = "completion_tokens_details")]
    output_tokens_details: Option<TokenCounts>,
}

impl UsageView {
    /// The bridge's usage: `input` excludes cached tokens, which are `cache_read`. Every other
    /// count is kept in `extra`: input details as `input_<name>`, output details under their
    /// own names (`reasoning_tokens`, `accepted_prediction_tokens`, …) except `audio_tokens`,
    /// which becomes `output_audio_tokens`; and `total_tokens`.
    pub(crate) fn into_usage(self) -> Usage {
        let input_details = self.input_tokens_details.unwrap_or_default();
        let output_details = self.output_tokens_details.unwrap_or_default();
        let mut usage = Usage {
            extra: TokenCounts::with_capacity(input_details.len() + output_details.len() + 1),
            ..Usage::default()
        };
        let mut cached = 0;
        for (k, v) in input_details {
            if k == "cached_tokens" {
                cached = v.as_i64().unwrap_or(0);
            } else {
                usage.extra.set(prefixed_count_name("input_", &k), v);
            }
        }
        for (k, v) in output_details {
            let name = if k == "audio_tokens" {
                Cow::Borrowed("output_audio_tokens")
            } else {
                k
            };
            usage.extra.set(name, v);
        }
        if let Some(total) = self.total_tokens {
            usage.extra.set("total_tokens", total);
        }
        usage.input = (self.input_tokens.unwrap_or(0) - cached).max(0);
        usage.cache_read = cached;
        usage.output = self.output_tokens.unwrap_or(0);
        usage
    }
}

/// An OpenAI error object (`{"message","type","param","code"}`), read leniently.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorView {
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Value>,
}

impl ErrorView {
    /// An error from fields found elsewhere (a Responses `error` event has them at the top).
    pub(crate) fn from_parts(code: Option<Value>, message: Option<String>) -> Self {
        Self {
            message,
            kind: None,
            code,
        }
    }

    /// `code: message`, falling back to the type when there is no code.
    pub(crate) fn describe(&self) -> String {
        let code = match &self.code {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let label = code.or_else(|| self.kind.clone()).unwrap_or_default();
        let message = self.message.as_deref().unwrap_or("");
        match (label.is_empty(), message.is_empty()) {
            (true, true) => "error".to_owned(),
            (true, false) => message.to_owned(),
            (false, true) => label,
            (false, false) => format!("{label}: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_maps_every_detail() {
        let view: UsageView = serde_json::from_str(
            r#"{"prompt_tokens":100,"completion_tokens":40,"total_tokens":140,
            "prompt_tokens_details":{"cached_tokens":30,"audio_tokens":2},
            "completion_tokens_details":{"reasoning_tokens":12,"audio_tokens":3,
            "accepted_prediction_tokens":4,"rejected_prediction_tokens":5}}"#,
        )
        .unwrap();
        let u = view.into_usage();
        assert_eq!(
            (u.input, u.cache_read, u.output, u.cache_write),
            (70, 30, 40, 0)
        );
        assert_eq!(
            serde_json::to_value(&u.extra).unwrap(),
            serde_json::json!({"input_audio_tokens":2,"reasoning_tokens":12,
                "output_audio_tokens":3,"accepted_prediction_tokens":4,
                "rejected_prediction_tokens":5,"total_tokens":140})
        );
    }

    #[test]
    fn responses_usage_and_errors() {
        let view: UsageView = serde_json::from_str(
            r#"{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":7,
            "output_tokens_details":{"reasoning_tokens":3},"total_tokens":17}"#,
        )
        .unwrap();
        let u = view.into_usage();
        assert_eq!((u.input, u.cache_read, u.output), (6, 4, 7));
        assert_eq!(u.extra.get("reasoning_tokens"), Some(&3.into()));
        let e: ErrorView =
            serde_json::from_str(r#"{"message":"slow down","type":"x","code":"rate_limit"}"#)
                .unwrap();
        assert_eq!(e.describe(), "rate_limit: slow down");
        assert_eq!(ErrorView::default().describe(), "error");
    }
}
