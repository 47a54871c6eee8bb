//! Smart mode: answer any request in its API's exact wire format, driven by prompt directives.

mod anthropic;
mod chat;
mod errors;
mod models;
mod plan;
mod responses;
mod sse;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::Value;

use crate::body::ChunkBody;
use crate::server::Shared;

pub(crate) use errors::Provider;

/// How many stored Responses the mock remembers (a bench sends many; memory stays bounded).
const STORED_RESPONSES: usize = 1024;

/// The fixed `created` timestamp (2026-01-01T00:00:00Z), so transcripts are reproducible.
pub(crate) const CREATED: u64 = 1_767_225_600;

/// A request's destination, after dropping any leading `/v1` segments.
#[derive(Debug)]
pub(crate) enum Route {
    Messages,
    CountTokens,
    ChatCompletions,
    Responses,
    Models { provider: Provider, query: String },
    Model { provider: Provider, id: String },
    NotFound { provider: Provider },
}

impl Route {
    pub(crate) fn parse(method: &Method, path: &str, headers: &HeaderMap) -> Route {
        let mut rest = path;
        while let Some(after) = rest.strip_prefix("/v1") {
            if after.is_empty() || after.starts_with('/') {
                rest = after;
            } else {
                break;
            }
        }
        let provider =
            if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
                Provider::Anthropic
            } else {
                Provider::OpenAi
            };
        let post = method == Method::POST;
        let get = method == Method::GET;
        match rest {
            "/messages" if post => Route::Messages,
            "/messages/count_tokens" if post => Route::CountTokens,
            "/chat/completions" if post => Route::ChatCompletions,
            "/responses" if post => Route::Responses,
            "/models" if get => Route::Models {
                provider,
                query: String::new(),
            },
            _ => match rest.strip_prefix("/models/") {
                Some(id) if get && !id.is_empty() => Route::Model {
                    provider,
                    id: id.to_owned(),
                },
                _ => Route::NotFound {
                    provider: match rest {
                        "/messages" | "/messages/count_tokens" => Provider::Anthropic,
                        "/chat/completions" | "/responses" => Provider::OpenAi,
                        _ => provider,
                    },
                },
            },
        }
    }

    /// Adds the query string (only the models list reads it).
    pub(crate) fn with_query(mut self, q: Option<&str>) -> Route {
        if let (Route::Models { query, .. }, Some(q)) = (&mut self, q) {
            q.clone_into(query);
        }
        self
    }

    /// Model routes consume scripted responses; the others always answer smartly.
    pub(crate) fn is_model_route(&self) -> bool {
        matches!(
            self,
            Route::Messages | Route::ChatCompletions | Route::Responses
        )
    }
}

/// A smart answer before it becomes an HTTP response.
pub(crate) struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    /// The request-id header of the provider (`request-id` / `x-request-id`) and its value.
    pub request_id: Option<(&'static str, String)>,
    /// Slow mode for blocking answers: the time the deltas would have taken.
    pub delay: Duration,
}

pub(crate) enum ReplyBody {
    Json(Bytes),
    Sse(Vec<(Duration, Bytes)>),
}

impl Reply {
    pub(crate) fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Json(Bytes::from(value.to_string())),
            request_id: None,
            delay: Duration::ZERO,
        }
    }

    pub(crate) fn sse(events: Vec<(Duration, Bytes)>) -> Reply {
        Reply {
            status: 200,
            body: ReplyBody::Sse(events),
            request_id: None,
            delay: Duration::ZERO,
        }
    }
}

/// What an API module needs to answer: the options and the id counter.
pub(crate) struct Ctx<'a> {
    shared: &'a Shared,
}

impl Ctx<'_> {
    pub(crate) fn text_deltas(&self) -> usize {
        self.shared.options.text_deltas
    }

    pub(crate) fn delta_delay(&self) -> Duration {
        self.shared.options.delta_delay
    }

    /// Keeps a stored response's items (its input, earlier ones included, and its output)
    /// for `previous_response_id`; the oldest go past [`STORED_RESPONSES`].
    pub(crate) fn store_response(&self, id: String, items: Vec<Value>) {
        let mut stored = crate::server::lock(&self.shared.stored);
        if stored.len() == STORED_RESPONSES {
            stored.pop_front();
        }
        stored.push_back((id, items));
    }

    /// The items of a stored response.
    pub(crate) fn stored_response(&self, id: &str) -> Option<Vec<Value>> {
        let stored = crate::server::lock(&self.shared.stored);
        stored
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|(_, items)| items.clone())
    }

    /// A fresh id such as `msg_mock000001`.
    pub(crate) fn id(&self, prefix: &str) -> String {
        format!("{prefix}{:06}", self.shared.next_id())
    }
}

/// Answers a request in smart mode.
pub(crate) async fn answer(shared: &Shared, route: &Route, body: &Bytes) -> Response<ChunkBody> {
    let ctx = Ctx { shared };
    let reply = match route {
        Route::Models { provider, query } => models::list(*provider, query),
        Route::Model { provider, id } => models::get(*provider, id),
        Route::NotFound { provider } => errors::reply(
            *provider,
            404,
            "Not found: no such route on the mock upstream.",
        ),
        Route::Messages | Route::CountTokens | Route::ChatCompletions | Route::Responses => {
            let provider = match route {
                Route::Messages | Route::CountTokens => Provider::Anthropic,
                _ => Provider::OpenAi,
            };
            match serde_json::from_slice::<Value>(body) {
                Err(err) => errors::reply(
                    provider,
                    400,
                    &format!("Request body is not valid JSON: {err}"),
                ),
                Ok(request) => match route {
                    Route::Messages => anthropic::messages(&ctx, &request),
                    Route::CountTokens => anthropic::count_tokens(&request),
                    Route::ChatCompletions => chat::completions(&ctx, &request),
                    _ => responses::create(&ctx, &request),
                },
            }
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    into_response(reply)
}

/// A 401 in the route's provider format when the mock requires a key and the request
/// carries another one (or none): lets a test prove which key reached the upstream.
pub(crate) fn refuse_wrong_key(
    shared: &Shared,
    route: &Route,
    headers: &HeaderMap,
) -> Option<Response<ChunkBody>> {
    let required = shared.options.required_key.as_deref()?;
    let sent = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = sent("authorization").and_then(|v| v.strip_prefix("Bearer "));
    if sent("x-api-key") == Some(required) || bearer == Some(required) {
        return None;
    }
    let provider = match route {
        Route::Messages | Route::CountTokens => Provider::Anthropic,
        Route::ChatCompletions | Route::Responses => Provider::OpenAi,
        Route::Models { provider, .. }
        | Route::Model { provider, .. }
        | Route::NotFound { provider } => *provider,
    };
    Some(into_response(errors::reply(
        provider,
        401,
        "mock upstream: not the API key it was started with (--require-key)",
    )))
}

fn into_response(reply: Reply) -> Response<ChunkBody> {
    let (body, content_type) = match reply.body {
        ReplyBody::Json(bytes) => (ChunkBody::full(bytes), "application/json"),
        ReplyBody::Sse(events) => (
            ChunkBody::chunks(events, false),
            "text/event-stream; charset=utf-8",
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type.starts_with("text/event-stream") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if let Some((name, value)) = reply.request_id
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(name, value);
    }
    response
}

/// The text of a content value: a string, or the `text` of its parts of the given types.
pub(crate) fn content_text(content: &Value, part_types: &[&str]) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| {
                    p.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| part_types.contains(&t))
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// The prompt in a user message's content: the string, or its last text part that is not a
/// `<system-reminder>` (Claude Code sends reminders as separate text blocks before the prompt).
pub(crate) fn prompt_text(content: &Value, part_types: &[&str]) -> String {
    let Some(parts) = content.as_array() else {
        return content.as_str().unwrap_or_default().to_owned();
    };
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| {
            p.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| part_types.contains(&t))
        })
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    texts
        .iter()
        .rev()
        .find(|t| !t.trim_start().starts_with("<system-reminder>"))
        .or(texts.last())
        .map_or_else(String::new, |t| (*t).to_owned())
}

/// Whether the request asks for a stream.
pub(crate) fn wants_stream(request: &Value) -> bool {
    request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The request's model, echoed back like real providers do.
pub(crate) fn model(request: &Value) -> &str {
    request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str, anthropic: bool) -> Route {
        let mut headers = HeaderMap::new();
        if anthropic {
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        Route::parse(&method, path, &headers)
    }

    #[test]
    fn paths_match_with_zero_one_or_two_v1_prefixes() {
        assert!(matches!(
            route(Method::POST, "/chat/completions", false),
            Route::ChatCompletions
        ));
        assert!(matches!(
            route(Method::POST, "/v1/v1/messages", true),
            Route::Messages
        ));
        assert!(matches!(
            route(Method::POST, "/v1/messages/count_tokens", true),
            Route::CountTokens
        ));
        assert!(matches!(
            route(Method::GET, "/v1/models", true),
            Route::Models {
                provider: Provider::Anthropic,
                ..
            }
        ));
        assert!(matches!(
            route(Method::GET, "/v1/models/gpt-mock", false),
            Route::Model {
                provider: Provider::OpenAi,
                ..
            }
        ));
        assert!(matches!(
            route(Method::GET, "/v1/messages", false),
            Route::NotFound {
                provider: Provider::Anthropic
            }
        ));
        assert!(matches!(
            route(Method::POST, "/v1x/responses", false),
            Route::NotFound { .. }
        ));
    }
}
