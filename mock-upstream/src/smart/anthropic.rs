//! Anthropic Messages: `POST /v1/messages` (blocking and SSE) and `count_tokens`.

use serde_json::{Value, json};

use super::errors::{self, Provider};
use super::plan::{FIXED_DELTAS, Fault, Plan, ToolDecl, Trigger, input_tokens, pieces};
use super::sse::SseOut;
use super::{Ctx, Reply, content_text, model, prompt_text, wants_stream};

/// An opaque, deterministic thinking signature (base64 of "aibridge mock thinking signature").
const SIGNATURE: &str = "YWlicmlkZ2UgbW9jayB0aGlua2luZyBzaWduYXR1cmU=";

fn message_list(request: &Value) -> &[Value] {
    request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": 10 + messages}`.
pub(crate) fn count_tokens(request: &Value) -> Reply {
    Reply::json(
        200,
        &json!({"input_tokens": input_tokens(message_list(request).len())}),
    )
}

fn trigger(messages: &[Value]) -> Trigger {
    // Claude Code may append a `system` message after the user turn: look at the last user one.
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    let Some(content) = last_user.and_then(|m| m.get("content")) else {
        return Trigger::Prompt(String::new());
    };
    let results: Vec<String> = content
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| {
            b.get("content")
                .map_or_else(String::new, |c| content_text(c, &["text"]))
        })
        .collect();
    if results.is_empty() {
        Trigger::Prompt(prompt_text(content, &["text"]))
    } else {
        Trigger::ToolResults(results)
    }
}

/// `POST /v1/messages`.
pub(crate) fn messages(ctx: &Ctx<'_>, request: &Value) -> Reply {
    let messages = message_list(request);
    let tools: Vec<ToolDecl<'_>> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .map(|name| ToolDecl {
            name,
            custom: false,
        })
        .collect();
    let plan = Plan::new(&trigger(messages), &tools);
    let stream = wants_stream(request);
    match plan.fault {
        Some(Fault::Status(status)) => {
            return errors::reply(Provider::Anthropic, status, &errors::status_message(status));
        }
        Some(Fault::Overloaded | Fault::Failed) if !stream => {
            return errors::reply(Provider::Anthropic, 529, "Overloaded");
        }
        _ => {}
    }
    let turn = Turn {
        id: ctx.id("msg_mock"),
        model: model(request),
        input: input_tokens(messages.len()),
        output: plan.output_tokens(ctx.text_deltas()),
        tool_ids: plan.calls.iter().map(|_| ctx.id("toolu_mock")).collect(),
        plan: &plan,
    };
    let mut reply = if stream {
        Reply::sse(turn.stream(ctx))
    } else {
        let mut reply = Reply::json(200, &turn.blocking());
        reply.delay = ctx.delta_delay() * plan.delta_count(ctx.text_deltas());
        reply
    };
    reply.request_id = Some(("request-id", turn.id.replace("msg_", "req_")));
    reply
}

struct Turn<'a> {
    id: String,
    model: &'a str,
    input: u64,
    output: u64,
    tool_ids: Vec<String>,
    plan: &'a Plan,
}

impl Turn<'_> {
    fn stop_reason(&self) -> &'static str {
        if self.plan.calls.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        }
    }

    fn usage(&self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.plan.cached,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": output,
            "service_tier": "standard"
        })
    }

    fn message(&self, content: Vec<Value>, stop_reason: Option<&str>, output: u64) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": self.usage(output),
        })
    }

    fn blocking(&self) -> Value {
        let mut content = Vec::new();
        if let Some(thinking) = &self.plan.thinking {
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": SIGNATURE}));
        }
        if let Some(text) = &self.plan.text {
            content.push(json!({"type": "text", "text": text}));
        }
        for (call, id) in self.plan.calls.iter().zip(&self.tool_ids) {
            content.push(
                json!({"type": "tool_use", "id": id, "name": call.name, "input": call.input}),
            );
        }
        self.message(content, Some(self.stop_reason()), self.output)
    }

    fn stream(&self, ctx: &Ctx<'_>) -> Vec<(std::time::Duration, bytes::Bytes)> {
        let mut out = SseOut::new(ctx.delta_delay());
        out.event(
            "message_start",
            &json!({"type": "message_start", "message": self.message(Vec::new(), None, 1)}),
        );
        if self.plan.fault.is_some() {
            out.event(
                "error",
                &json!({
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                    "request_id": self.id.replace("msg_", "req_"),
                }),
            );
            return out.finish();
        }
        let mut index = 0;
        let mut block =
            |out: &mut SseOut, start: Value, deltas: Vec<Value>, after: Option<Value>| {
                out.event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": start}),
                );
                if index == 0 {
                    out.event("ping", &json!({"type": "ping"}));
                }
                for delta in deltas {
                    out.delta(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                    );
                }
                if let Some(delta) = after {
                    out.event(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                    );
                }
                out.event(
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": index}),
                );
                index += 1;
            };
        if let Some(thinking) = &self.plan.thinking {
            let deltas = pieces(thinking, FIXED_DELTAS)
                .into_iter()
                .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                .collect();
            let signature = json!({"type": "signature_delta", "signature": SIGNATURE});
            block(
                &mut out,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                deltas,
                Some(signature),
            );
        }
        if let Some(text) = &self.plan.text {
            let deltas = pieces(text, ctx.text_deltas())
                .into_iter()
                .map(|p| json!({"type": "text_delta", "text": p}))
                .collect();
            block(&mut out, json!({"type": "text", "text": ""}), deltas, None);
        }
        for (call, id) in self.plan.calls.iter().zip(&self.tool_ids) {
            let deltas = pieces(&call.arguments, FIXED_DELTAS)
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            block(
                &mut out,
                json!({"type": "tool_use", "id": id, "name": call.name, "input": {}}),
                deltas,
                None,
            );
        }
        out.event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null},
                "usage": {
                    "input_tokens": self.input,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": self.plan.cached,
                    "output_tokens": self.output,
                },
            }),
        );
        out.event("message_stop", &json!({"type": "message_stop"}));
        out.finish()
    }
}
