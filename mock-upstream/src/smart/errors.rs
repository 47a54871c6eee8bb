//! Error bodies in each provider's documented format.

use serde_json::{Value, json};

use super::Reply;

/// Which provider's dialect an answer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Anthropic,
    OpenAi,
}

/// An error reply with the provider's body for `status`.
pub(crate) fn reply(provider: Provider, status: u16, message: &str) -> Reply {
    let body = match provider {
        Provider::Anthropic => anthropic_error(status, message),
        Provider::OpenAi => openai_error(status, message),
    };
    Reply::json(status, &body)
}

/// The Anthropic `error.type` for an HTTP status.
pub(crate) fn anthropic_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type":…,"message":…},"request_id":…}`.
pub(crate) fn anthropic_error(status: u16, message: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": anthropic_type(status), "message": message},
        "request_id": "req_mock_error"
    })
}

/// `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
pub(crate) fn openai_error(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => (
            "invalid_request_error",
            json!("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", json!("unknown_url")),
        429 => ("requests", json!("rate_limit_exceeded")),
        _ => ("server_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The message the `[[status:N]]` directive answers with.
pub(crate) fn status_message(status: u16) -> String {
    match status {
        429 => "Rate limit reached (mock upstream, [[status:429]]).".to_owned(),
        529 => "Overloaded".to_owned(),
        _ => format!("Mock upstream error for [[status:{status}]]."),
    }
}
