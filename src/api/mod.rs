//! The wire APIs the bridge intercepts. Each module answers the same questions for its API:
//! what the request asks for ([`RequestInfo`]), what a response or stream event says
//! ([`Observer`]), and how an error the bridge makes looks.

pub mod chat_completions;
pub mod chat_loop;
pub mod client;
pub mod messages;
pub mod messages_loop;
mod openai;
pub mod responses;
pub mod responses_loop;
mod scan;

use std::sync::LazyLock;

use bytes::Bytes;
use http::StatusCode;
use memchr::memmem;
use serde_json::{Map, Value};

use crate::provider::ProviderKind;
use crate::record::TokenCounts;
use crate::sse::SseEvent;

/// An intercepted wire API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    /// Anthropic `POST /v1/messages`.
    Messages,
    /// OpenAI `POST /v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `POST /v1/responses`.
    Responses,
}

impl ApiKind {
    /// The API a request path (below the provider prefix) is bridged to, if any.
    pub fn route(kind: ProviderKind, method: &http::Method, rest: &str) -> Option<ApiKind> {
        if method != http::Method::POST {
            return None;
        }
        let rest = rest.trim_end_matches('/');
        match (kind, rest) {
            (ProviderKind::Anthropic, "/v1/messages") => Some(ApiKind::Messages),
            (ProviderKind::OpenAi, "/v1/chat/completions") => Some(ApiKind::ChatCompletions),
            (ProviderKind::OpenAi, "/v1/responses") => Some(ApiKind::Responses),
            _ => None,
        }
    }

    /// The API's path below the provider prefix (without a trailing slash).
    pub fn path(self) -> &'static str {
        match self {
            ApiKind::Messages => "/v1/messages",
            ApiKind::ChatCompletions => "/v1/chat/completions",
            ApiKind::Responses => "/v1/responses",
        }
    }

    /// The API's position in [`Self::ALL`], for per-API tables.
    pub(crate) fn index(self) -> usize {
        match self {
            ApiKind::Messages => 0,
            ApiKind::ChatCompletions => 1,
            ApiKind::Responses => 2,
        }
    }

    /// The stable name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::Messages => "messages",
            ApiKind::ChatCompletions => "chat_completions",
            ApiKind::Responses => "responses",
        }
    }

    /// What the request asks for, or a 400 when it is not something the API accepts.
    pub fn inspect(self, body: &[u8]) -> Result<RequestInfo, BadRequest> {
        match self {
            ApiKind::Messages => messages::inspect(body),
            ApiKind::ChatCompletions => chat_completions::inspect(body),
            ApiKind::Responses => responses::inspect(body),
        }
    }

    /// The body to send upstream: the client's bytes, unless the request needs an edit
    /// ([`RequestInfo::add_stream_usage`]).
    pub fn upstream_body(self, info: &RequestInfo, body: Bytes) -> Result<Bytes, BadRequest> {
        match self {
            ApiKind::ChatCompletions if info.add_stream_usage => {
                chat_completions::with_stream_usage(&body)
            }
            ApiKind::Messages | ApiKind::ChatCompletions | ApiKind::Responses => Ok(body),
        }
    }

    /// A fresh observer for one upstream response to the request described by `info`.
    pub fn observer(self, info: &RequestInfo) -> Box<dyn Observer> {
        match self {
            ApiKind::Messages => Box::new(messages::MessagesObserver::default()),
            ApiKind::ChatCompletions => Box::new(chat_completions::ChatObserver::new(info)),
            ApiKind::Responses => Box::new(responses::ResponsesObserver::default()),
        }
    }

    /// The API's half of the tool loop, where the loop is supported.
    pub fn loop_api(self) -> Option<&'static dyn crate::intercept::tool_loop::LoopApi> {
        match self {
            ApiKind::Messages => Some(&messages_loop::MESSAGES_LOOP),
            ApiKind::ChatCompletions => Some(&chat_loop::CHAT_LOOP),
            ApiKind::Responses => Some(&responses_loop::RESPONSES_LOOP),
        }
    }

    /// The SSE event that tells a client of this API that the stream broke.
    pub fn stream_error_event(self, kind: ErrorKind, message: &str) -> Bytes {
        match self {
            ApiKind::Messages => {
                let body = error_body(ProviderKind::Anthropic, kind, message);
                let mut out = Vec::with_capacity(body.len() + 24);
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
            ApiKind::ChatCompletions => {
                let body = error_body(ProviderKind::OpenAi, kind, message);
                let mut out = Vec::with_capacity(body.len() + 24);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
            ApiKind::Responses => {
                // A Responses `error` event (`type`, `code`, `message`, `param` at the top)
                // that also carries the `error` object, which the SDKs raise as an API error.
                let (kind_name, code) = kind.openai_type();
                let event = serde_json::json!({
                    "type": "error",
                    "code": code.unwrap_or(kind_name),
                    "message": message,
                    "param": null,
                    "error": { "message": message, "type": kind_name, "param": null, "code": code },
                });
                Bytes::from(format!("event: error\ndata: {event}\n\n"))
            }
        }
    }
}

/// What the bridge learned from a request body. Only what it needs is parsed; the body
/// itself is forwarded untouched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestInfo {
    /// The requested model.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The user's prompt, if the last user message has text.
    pub prompt: Option<String>,
    /// A session id found in the body (e.g. `metadata.user_id`).
    pub session_id: Option<String>,
    /// Extra facts kept on the interception (`previous_response_id`, …).
    pub metadata: Map<String, Value>,
    /// Chat Completions streams only: the client did not ask for
    /// `stream_options.include_usage`, so the bridge asks upstream for it (to record usage)
    /// and hides the extra usage-only chunk from the client.
    pub add_stream_usage: bool,
}

/// A request body the bridge refuses (400, nothing goes upstream).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    /// What is wrong, for the client.
    pub message: String,
}

impl BadRequest {
    /// A bad request with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Refuses a body that is not a JSON object before any view reads it: serde fills a struct
/// from a JSON array by position, so `["m"]` would otherwise pass as a request with a model.
pub(crate) fn require_object(body: &[u8]) -> Result<(), BadRequest> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Ok(_) => Err(BadRequest::new("request body must be a JSON object")),
        Err(_) => Err(not_json(body)),
    }
}

/// A whole upstream response body read as `T`; `None` when it is not JSON of that shape.
///
/// The body is checked as UTF-8 once and parsed as text: from bytes, serde_json checks every
/// string it reads on its own, and a response's keys and short values are dozens of strings
/// (a Chat Completions answer: 31; about 2,800 instructions fewer per blocking request,
/// callgrind).
pub(crate) fn read_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str(text).ok()
}

/// The refusal of a body that is not well-formed JSON, saying where, as serde_json finds it.
pub(crate) fn not_json(body: &[u8]) -> BadRequest {
    match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(e) => BadRequest::new(format!("request body is not valid JSON: {e}")),
        // Only the scanner's extra strictness (a key that is not UTF-8) gets here.
        Ok(_) => BadRequest::new("request body is not valid JSON"),
    }
}

/// Token usage of one upstream response, in the bridge's terms: `input` excludes cached
/// tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Input tokens not read from or written to a cache.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Input tokens read from the cache.
    pub cache_read: i64,
    /// Input tokens written to the cache.
    pub cache_write: i64,
    /// Other counts by name.
    pub extra: TokenCounts,
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The provider's call id.
    pub id: Option<String>,
    /// The tool's name.
    pub name: String,
    /// Arguments: parsed JSON, or the raw string when not valid JSON.
    pub input: Value,
    /// Extra detail (tool type, …).
    pub metadata: Map<String, Value>,
}

/// A model thought.
#[derive(Debug, Clone, PartialEq)]
pub struct Thought {
    /// Its text.
    pub content: String,
    /// `thinking`, `reasoning_summary` or `commentary`.
    pub source: &'static str,
}

/// What one upstream response said, as far as the records care.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The provider's response id.
    pub response_id: Option<String>,
    /// Token usage, if reported.
    pub usage: Option<Usage>,
    /// Tool calls, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Thoughts, in order.
    pub thoughts: Vec<Thought>,
    /// An error the upstream reported inside a 2xx stream or body.
    pub error: Option<String>,
}

/// What the relay does with a stream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAction {
    /// Forward the event's bytes unchanged.
    Forward,
    /// Hide the event from the client.
    Drop,
}

/// Watches one upstream response. Observation parses only what it needs.
pub trait Observer: Send + 'static {
    /// A stream event went by.
    fn on_event(&mut self, event: &SseEvent) -> EventAction;
    /// A whole blocking response body.
    fn on_body(&mut self, body: &[u8]);
    /// Everything observed so far; the observer is left empty.
    fn take(&mut self) -> Observation;
    /// Whether the stream's last event, as the API defines it, went by (`message_stop`,
    /// `[DONE]`, a terminal `response.*`): a client that leaves after it had the whole answer.
    fn finished(&self) -> bool {
        false
    }
}

/// The kinds of error the bridge reports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request was malformed.
    InvalidRequest,
    /// No valid credentials.
    Authentication,
    /// Nothing at that path.
    NotFound,
    /// The body is too large.
    RequestTooLarge,
    /// The upstream failed or could not be reached.
    Upstream,
    /// The upstream is overloaded or the breaker is open.
    Overloaded,
    /// The bridge failed.
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this error.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::Upstream | ErrorKind::Internal => "api_error",
            ErrorKind::Overloaded => "overloaded_error",
        }
    }

    fn openai_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            ErrorKind::InvalidRequest => ("invalid_request_error", None),
            ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
            ErrorKind::NotFound => ("invalid_request_error", Some("not_found")),
            ErrorKind::RequestTooLarge => ("invalid_request_error", Some("request_too_large")),
            ErrorKind::Upstream => ("server_error", Some("upstream_error")),
            ErrorKind::Overloaded => ("server_error", Some("overloaded")),
            ErrorKind::Internal => ("server_error", None),
        }
    }
}

/// An error body in the provider's own format.
pub fn error_body(kind: ProviderKind, error: ErrorKind, message: &str) -> Bytes {
    let value = match kind {
        ProviderKind::Anthropic => serde_json::json!({
            "type": "error",
            "error": { "type": error.anthropic_type(), "message": message },
        }),
        ProviderKind::OpenAi => {
            let (kind, code) = error.openai_type();
            serde_json::json!({
                "error": { "message": message, "type": kind, "param": null, "code": code },
            })
        }
    };
    Bytes::from(value.to_string())
}

/// Parses arguments that should be JSON; keeps the raw string when they are not.
pub fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// A short byte string looked for in every stream event (a JSON key): its vectorised
/// searcher is built once, on first use, not once per event.
pub(crate) struct Needle(LazyLock<memmem::Finder<'static>>);

impl Needle {
    /// A needle whose searcher `init` builds.
    pub(crate) const fn new(init: fn() -> memmem::Finder<'static>) -> Needle {
        Needle(LazyLock::new(init))
    }

    /// Whether `haystack` contains the needle.
    pub(crate) fn is_in(&self, haystack: &[u8]) -> bool {
        self.0.find(haystack).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_refuses_bodies_that_are_not_objects() {
        for api in [
            ApiKind::Messages,
            ApiKind::ChatCompletions,
            ApiKind::Responses,
        ] {
            for body in [
                &br#"["m", true]"#[..],
                b" [{\"model\":\"m\"}]",
                b"\"m\"",
                b"1",
                b"null",
            ] {
                let err = api.inspect(body).err().map(|e| e.message);
                assert_eq!(
                    err.as_deref(),
                    Some("request body must be a JSON object"),
                    "{} {:?}",
                    api.as_str(),
                    String::from_utf8_lossy(body)
                );
            }
            let err = api.inspect(b"").err().map(|e| e.message);
            assert_eq!(
                err.as_deref(),
                Some(
                    "request body is not valid JSON: EOF while parsing a value at line 1 column 0"
                )
            );
            let ok = api.inspect(b" \n\t{\"model\":\"m\"}").map(|i| i.model);
            assert_eq!(ok.ok().as_deref(), Some("m"), "{}", api.as_str());
        }
    }
}
