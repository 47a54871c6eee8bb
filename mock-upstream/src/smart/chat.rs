//! OpenAI Chat Completions: `POST /v1/chat/completions` (blocking and SSE chunks).

use serde_json::{Value, json};

use super::errors::{self, Provider};
use super::plan::{FIXED_DELTAS, Fault, Plan, ToolDecl, Trigger, input_tokens, pieces};
use super::sse::SseOut;
use super::{CREATED, Ctx, Reply, content_text, model, prompt_text, wants_stream};

fn trigger(messages: &[Value]) -> Trigger {
    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let trailing_tools: Vec<String> = messages
        .iter()
        .rev()
        .take_while(|m| role(m) == "tool")
        .map(|m| {
            m.get("content")
                .map_or_else(String::new, |c| content_text(c, &["text"]))
        })
        .collect();
    if !trailing_tools.is_empty() {
        return Trigger::ToolResults(trailing_tools.into_iter().rev().collect());
    }
    let prompt = messages
        .iter()
        .rev()
        .find(|m| role(m) == "user")
        .and_then(|m| m.get("content"))
        .map_or_else(String::new, |c| prompt_text(c, &["text"]));
    Trigger::Prompt(prompt)
}

/// `POST /v1/chat/completions`.
pub(crate) fn completions(ctx: &Ctx<'_>, request: &Value) -> Reply {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let tools: Vec<ToolDecl<'_>> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .map(|name| ToolDecl {
            name,
            custom: false,
        })
        .collect();
    let mut plan = Plan::new(&trigger(messages), &tools);
    // Chat Completions has no reasoning content to show.
    plan.thinking = None;
    let stream = wants_stream(request);
    match plan.fault {
        Some(Fault::Status(status)) => {
            return errors::reply(Provider::OpenAi, status, &errors::status_message(status));
        }
        Some(Fault::Overloaded | Fault::Failed) if !stream => {
            return errors::reply(
                Provider::OpenAi,
                503,
                "The server is overloaded (mock upstream).",
            );
        }
        _ => {}
    }
    let turn = Turn {
        id: ctx.id("chatcmpl-mock"),
        model: model(request),
        prompt: input_tokens(messages.len()) + plan.cached,
        completion: plan.output_tokens(ctx.text_deltas()),
        call_ids: plan.calls.iter().map(|_| ctx.id("call_mock")).collect(),
        plan: &plan,
    };
    let mut reply = if stream {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Reply::sse(turn.stream(ctx, include_usage))
    } else {
        let mut reply = Reply::json(200, &turn.blocking());
        reply.delay = ctx.delta_delay() * plan.delta_count(ctx.text_deltas());
        reply
    };
    reply.request_id = Some(("x-request-id", turn.id.replace("chatcmpl-", "req_")));
    reply
}

struct Turn<'a> {
    id: String,
    model: &'a str,
    prompt: u64,
    completion: u64,
    call_ids: Vec<String>,
    plan: &'a Plan,
}

impl Turn<'_> {
    fn finish_reason(&self) -> &'static str {
        if self.plan.calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
    }

    fn usage(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.plan.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }

    fn blocking(&self) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": self.plan.text,
            "refusal": null,
            "annotations": [],
        });
        if !self.plan.calls.is_empty() {
            let calls: Vec<Value> = self
                .plan
                .calls
                .iter()
                .zip(&self.call_ids)
                .map(|(call, id)| {
                    json!({
                        "id": id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            message["tool_calls"] = Value::Array(calls);
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": null,
                "finish_reason": self.finish_reason(),
            }],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        })
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }

    fn delta_chunk(&self, delta: Value, finish_reason: Option<&str>, include_usage: bool) -> Value {
        self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
            include_usage.then_some(Value::Null),
        )
    }

    fn stream(
        &self,
        ctx: &Ctx<'_>,
        include_usage: bool,
    ) -> Vec<(std::time::Duration, bytes::Bytes)> {
        let mut out = SseOut::new(ctx.delta_delay());
        let first_content = if self.plan.text.is_some() {
            json!("")
        } else {
            Value::Null
        };
        out.data(
            &self.delta_chunk(
                json!({"role": "assistant", "content": first_content, "refusal": null}),
                None,
                include_usage,
            ),
            false,
        );
        if self.plan.fault.is_some() {
            out.data(
                &json!({"error": {
                    "message": "The server is overloaded (mock upstream).",
                    "type": "server_error",
                    "param": null,
                    "code": null,
                }}),
                false,
            );
            return out.finish();
        }
        if let Some(text) = &self.plan.text {
            for piece in pieces(text, ctx.text_deltas()) {
                out.data(
                    &self.delta_chunk(json!({"content": piece}), None, include_usage),
                    true,
                );
            }
        }
        for (index, (call, id)) in self.plan.calls.iter().zip(&self.call_ids).enumerate() {
            let head = json!({"tool_calls": [{
                "index": index,
                "id": id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }]});
            out.data(&self.delta_chunk(head, None, include_usage), false);
            for piece in pieces(&call.arguments, FIXED_DELTAS) {
                let delta =
                    json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
                out.data(&self.delta_chunk(delta, None, include_usage), true);
            }
        }
        out.data(
            &self.delta_chunk(json!({}), Some(self.finish_reason()), include_usage),
            false,
        );
        if include_usage {
            out.data(&self.chunk(json!([]), Some(self.usage())), false);
        }
        out.raw(b"data: [DONE]\n\n");
        out.finish()
    }
}
