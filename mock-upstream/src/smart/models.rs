//! `GET /v1/models` and `GET /v1/models/{id}` in each provider's shape.

use serde_json::{Value, json};

use super::errors::{self, Provider};
use super::{CREATED, Reply};

const ANTHROPIC_MODELS: [(&str, &str); 3] = [
    ("claude-mock-opus", "Claude Mock Opus"),
    ("claude-mock-sonnet", "Claude Mock Sonnet"),
    ("claude-mock-haiku", "Claude Mock Haiku"),
];
const OPENAI_MODELS: [&str; 3] = ["gpt-mock", "gpt-mock-mini", "gpt-mock-codex"];

fn anthropic_model(id: &str, name: &str) -> Value {
    json!({"type": "model", "id": id, "display_name": name, "created_at": "2026-01-01T00:00:00Z"})
}

fn openai_model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": CREATED, "owned_by": "aibridge-mock"})
}

/// The list, paged for Anthropic by `limit`, `after_id` and `before_id`.
pub(crate) fn list(provider: Provider, query: &str) -> Reply {
    match provider {
        Provider::OpenAi => {
            let data: Vec<Value> = OPENAI_MODELS.iter().map(|id| openai_model(id)).collect();
            Reply::json(200, &json!({"object": "list", "data": data}))
        }
        Provider::Anthropic => {
            let param = |name: &str| {
                query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v)
            };
            let limit = param("limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(20)
                .clamp(1, 1000);
            let position = |id: &str| ANTHROPIC_MODELS.iter().position(|(m, _)| *m == id);
            let all = ANTHROPIC_MODELS.len();
            let (start, end) = match (param("after_id"), param("before_id")) {
                (Some(after), _) => {
                    let start = position(after).map_or(all, |p| p + 1);
                    (start, (start + limit).min(all))
                }
                (None, Some(before)) => {
                    let end = position(before).unwrap_or(0);
                    (end.saturating_sub(limit), end)
                }
                (None, None) => (0, limit.min(all)),
            };
            let page = &ANTHROPIC_MODELS[start..end.max(start)];
            let data: Vec<Value> = page
                .iter()
                .map(|(id, name)| anthropic_model(id, name))
                .collect();
            let has_more = if param("before_id").is_some() && param("after_id").is_none() {
                start > 0
            } else {
                end < all
            };
            Reply::json(
                200,
                &json!({
                    "data": data,
                    "has_more": has_more,
                    "first_id": page.first().map(|(id, _)| *id),
                    "last_id": page.last().map(|(id, _)| *id),
                }),
            )
        }
    }
}

/// One model, or 404 in the provider's format.
pub(crate) fn get(provider: Provider, id: &str) -> Reply {
    let found = match provider {
        Provider::Anthropic => ANTHROPIC_MODELS
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(m, name)| anthropic_model(m, name)),
        Provider::OpenAi => OPENAI_MODELS
            .iter()
            .find(|m| **m == id)
            .map(|m| openai_model(m)),
    };
    match found {
        Some(model) => Reply::json(200, &model),
        None => errors::reply(provider, 404, &format!("model: {id}")),
    }
}
