//! OpenAI Responses: `POST /v1/responses` (blocking object and semantic SSE events).

use serde_json::{Value, json};

use super::errors::{self, Provider};
use super::plan::{FIXED_DELTAS, Fault, Plan, ToolDecl, Trigger, input_tokens, pieces};
use super::sse::SseOut;
use super::{CREATED, Ctx, Reply, content_text, model, prompt_text, wants_stream};

fn item_type(item: &Value) -> &str {
    item.get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
}

fn trigger(input: &Value) -> Trigger {
    let Some(items) = input.as_array() else {
        return Trigger::Prompt(input.as_str().unwrap_or_default().to_owned());
    };
    let outputs: Vec<String> = items
        .iter()
        .rev()
        .take_while(|i| {
            matches!(
                item_type(i),
                "function_call_output" | "custom_tool_call_output"
            )
        })
        .map(|i| {
            i.get("output").map_or_else(String::new, |o| {
                content_text(o, &["input_text", "output_text"])
            })
        })
        .collect();
    if !outputs.is_empty() {
        return Trigger::ToolResults(outputs.into_iter().rev().collect());
    }
    let prompt = items
        .iter()
        .rev()
        .find(|i| {
            item_type(i) == "message" && i.get("role").and_then(Value::as_str) == Some("user")
        })
        .and_then(|i| i.get("content"))
        .map_or_else(String::new, |c| prompt_text(c, &["input_text"]));
    Trigger::Prompt(prompt)
}

/// A request's `input` as items: a string is one user message.
fn input_items(input: &Value) -> Vec<Value> {
    match input {
        Value::Array(items) => items.clone(),
        Value::String(text) => vec![json!({"role": "user", "content": text})],
        _ => Vec::new(),
    }
}

/// The `call_id` of the first function (or custom tool) call without its output.
fn unanswered_call(items: &[Value]) -> Option<&str> {
    let answered: Vec<&str> = items
        .iter()
        .filter(|i| item_type(i).ends_with("_call_output"))
        .filter_map(|i| i.get("call_id").and_then(Value::as_str))
        .collect();
    items
        .iter()
        .filter(|i| matches!(item_type(i), "function_call" | "custom_tool_call"))
        .filter_map(|i| i.get("call_id").and_then(Value::as_str))
        .find(|id| !answered.contains(id))
}

/// `POST /v1/responses`.
pub(crate) fn create(ctx: &Ctx<'_>, request: &Value) -> Reply {
    let input = request.get("input").unwrap_or(&Value::Null);
    let items = input.as_array().map_or(1, Vec::len);
    let tools: Vec<ToolDecl<'_>> = request
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let custom = match t.get("type").and_then(Value::as_str) {
                Some("function") => false,
                Some("custom") => true,
                _ => return None,
            };
            let name = t.get("name").and_then(Value::as_str)?;
            Some(ToolDecl { name, custom })
        })
        .collect();
    let mut plan = Plan::new(&trigger(input), &tools);
    if request.get("parallel_tool_calls") == Some(&Value::Bool(false)) {
        plan.single_call();
    }
    let stream = wants_stream(request);
    // Like the API: a stored response is continued from with `previous_response_id`, and
    // every function call in the conversation so far must have its output by then.
    let mut context = Vec::new();
    if let Some(previous) = request.get("previous_response_id").and_then(Value::as_str) {
        let Some(items) = ctx.stored_response(previous) else {
            let message = format!("Previous response with id '{previous}' not found.");
            return errors::reply(Provider::OpenAi, 400, &message);
        };
        context = items;
        context.extend(input_items(input));
        if let Some(call_id) = unanswered_call(&context) {
            let message = format!("No tool output found for function call {call_id}.");
            return errors::reply(Provider::OpenAi, 400, &message);
        }
    } else {
        context.extend(input_items(input));
    }
    match plan.fault {
        Some(Fault::Status(status)) => {
            return errors::reply(Provider::OpenAi, status, &errors::status_message(status));
        }
        Some(Fault::Overloaded | Fault::Failed) if !stream => {
            return errors::reply(
                Provider::OpenAi,
                500,
                "The server had an error while processing your request (mock upstream).",
            );
        }
        _ => {}
    }
    let id = ctx.id("resp_mock");
    let mut output = Vec::new();
    if let Some(summary) = &plan.thinking {
        output.push(Item::Reasoning {
            id: ctx.id("rs_mock"),
            summary,
        });
    }
    if let Some(text) = &plan.text {
        output.push(Item::Message {
            id: ctx.id("msg_mock"),
            text,
        });
    }
    for call in &plan.calls {
        let id = ctx.id(if call.custom { "ctc_mock" } else { "fc_mock" });
        output.push(Item::Call {
            id,
            call_id: ctx.id("call_mock"),
            call,
        });
    }
    let turn = Turn {
        id,
        request,
        model: model(request),
        input: input_tokens(items) + plan.cached,
        output_tokens: plan.output_tokens(ctx.text_deltas()),
        items: output,
        plan: &plan,
    };
    if request.get("store") != Some(&Value::Bool(false)) && plan.fault.is_none() {
        context.extend(turn.items.iter().map(|i| i.json(true)));
        ctx.store_response(turn.id.clone(), context);
    }
    let mut reply = if stream {
        Reply::sse(turn.stream(ctx))
    } else {
        let mut reply = Reply::json(200, &turn.response("completed", true, Value::Null));
        reply.delay = ctx.delta_delay() * plan.delta_count(ctx.text_deltas());
        reply
    };
    reply.request_id = Some(("x-request-id", turn.id.replace("resp_", "req_")));
    reply
}

enum Item<'a> {
    Reasoning {
        id: String,
        summary: &'a str,
    },
    Message {
        id: String,
        text: &'a str,
    },
    Call {
        id: String,
        call_id: String,
        call: &'a super::plan::Call,
    },
}

impl Item<'_> {
    fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item as `output_item.added` (empty) or `output_item.done` / final (full) shows it.
    fn json(&self, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match self {
            Item::Reasoning { id, summary } => {
                let summary = if done {
                    json!([{"type": "summary_text", "text": summary}])
                } else {
                    json!([])
                };
                json!({"id": id, "type": "reasoning", "summary": summary})
            }
            Item::Message { id, text } => {
                let content = if done {
                    json!([output_text(text)])
                } else {
                    json!([])
                };
                json!({"id": id, "type": "message", "status": status, "content": content, "role": "assistant"})
            }
            Item::Call { id, call_id, call } => {
                let arguments = if done { call.arguments.as_str() } else { "" };
                if call.custom {
                    json!({"id": id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": call.name, "input": arguments})
                } else {
                    json!({"id": id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id, "name": call.name})
                }
            }
        }
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

struct Turn<'a> {
    id: String,
    request: &'a Value,
    model: &'a str,
    input: u64,
    output_tokens: u64,
    items: Vec<Item<'a>>,
    plan: &'a Plan,
}

impl Turn<'_> {
    fn response(&self, status: &str, with_output: bool, error: Value) -> Value {
        let output: Vec<Value> = if with_output {
            self.items.iter().map(|i| i.json(true)).collect()
        } else {
            Vec::new()
        };
        let usage = (status == "completed").then(|| {
            json!({
                "input_tokens": self.input,
                "input_tokens_details": {"cached_tokens": self.plan.cached},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": self.plan.reasoning_tokens()},
                "total_tokens": self.input + self.output_tokens,
            })
        });
        let field = |name: &str, default: Value| self.request.get(name).cloned().unwrap_or(default);
        json!({
            "id": self.id,
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "background": false,
            "error": error,
            "incomplete_details": null,
            "instructions": field("instructions", Value::Null),
            "max_output_tokens": field("max_output_tokens", Value::Null),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": field("parallel_tool_calls", json!(true)),
            "previous_response_id": field("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "service_tier": "default",
            "store": field("store", json!(true)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": field("tool_choice", json!("auto")),
            "tools": field("tools", json!([])),
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": field("metadata", json!({})),
        })
    }

    fn stream(&self, ctx: &Ctx<'_>) -> Vec<(std::time::Duration, bytes::Bytes)> {
        let mut out = Events {
            out: SseOut::new(ctx.delta_delay()),
            seq: 0,
        };
        let created = self.response("in_progress", false, Value::Null);
        out.event("response.created", json!({"response": created}), false);
        out.event("response.in_progress", json!({"response": created}), false);
        match self.plan.fault {
            Some(Fault::Failed) => {
                let error = json!({"code": "server_error", "message": "The model failed to generate a response (mock upstream)."});
                let failed = self.response("failed", false, error);
                out.event("response.failed", json!({"response": failed}), false);
                return out.out.finish();
            }
            Some(_) => {
                out.event(
                    "error",
                    json!({"code": "server_error", "message": "The server is overloaded (mock upstream).", "param": null}),
                    false,
                );
                return out.out.finish();
            }
            None => {}
        }
        for (index, item) in self.items.iter().enumerate() {
            let at = |mut v: Value| {
                let mut fields = serde_json::Map::with_capacity(6);
                fields.insert("item_id".into(), json!(item.id()));
                fields.insert("output_index".into(), json!(index));
                if let Some(rest) = v.as_object_mut() {
                    fields.append(rest);
                }
                Value::Object(fields)
            };
            out.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item.json(false)}),
                false,
            );
            match item {
                Item::Reasoning { summary, .. } => {
                    let part = |text: &str| json!({"type": "summary_text", "text": text});
                    out.event(
                        "response.reasoning_summary_part.added",
                        at(json!({"summary_index": 0, "part": part("")})),
                        false,
                    );
                    for piece in pieces(summary, FIXED_DELTAS) {
                        out.event(
                            "response.reasoning_summary_text.delta",
                            at(json!({"summary_index": 0, "delta": piece})),
                            true,
                        );
                    }
                    out.event(
                        "response.reasoning_summary_text.done",
                        at(json!({"summary_index": 0, "text": summary})),
                        false,
                    );
                    out.event(
                        "response.reasoning_summary_part.done",
                        at(json!({"summary_index": 0, "part": part(summary)})),
                        false,
                    );
                }
                Item::Message { text, .. } => {
                    out.event(
                        "response.content_part.added",
                        at(json!({"content_index": 0, "part": output_text("")})),
                        false,
                    );
                    for piece in pieces(text, ctx.text_deltas()) {
                        out.event(
                            "response.output_text.delta",
                            at(json!({"content_index": 0, "delta": piece, "logprobs": []})),
                            true,
                        );
                    }
                    out.event(
                        "response.output_text.done",
                        at(json!({"content_index": 0, "text": text, "logprobs": []})),
                        false,
                    );
                    out.event(
                        "response.content_part.done",
                        at(json!({"content_index": 0, "part": output_text(text)})),
                        false,
                    );
                }
                Item::Call { call, .. } => {
                    let (delta, done, field) = if call.custom {
                        (
                            "response.custom_tool_call_input.delta",
                            "response.custom_tool_call_input.done",
                            "input",
                        )
                    } else {
                        (
                            "response.function_call_arguments.delta",
                            "response.function_call_arguments.done",
                            "arguments",
                        )
                    };
                    for piece in pieces(&call.arguments, FIXED_DELTAS) {
                        out.event(delta, at(json!({"delta": piece})), true);
                    }
                    let mut fin = at(json!({}));
                    fin[field] = json!(call.arguments);
                    if !call.custom {
                        fin["name"] = json!(call.name);
                    }
                    out.event(done, fin, false);
                }
            }
            out.event(
                "response.output_item.done",
                json!({"output_index": index, "item": item.json(true)}),
                false,
            );
        }
        let completed = self.response("completed", true, Value::Null);
        out.event("response.completed", json!({"response": completed}), false);
        out.out.finish()
    }
}

/// Numbers every event with `sequence_number`, starting at 0.
struct Events {
    out: SseOut,
    seq: u64,
}

impl Events {
    fn event(&mut self, name: &str, mut data: Value, is_delta: bool) {
        // `type` first, as the API shows it; `preserve_order` keeps insertion order.
        let mut event = serde_json::Map::with_capacity(8);
        event.insert("type".into(), json!(name));
        event.insert("sequence_number".into(), json!(self.seq));
        if let Some(fields) = data.as_object_mut() {
            event.append(fields);
        }
        self.seq += 1;
        if is_delta {
            self.out.delta(name, &event);
        } else {
            self.out.event(name, &event);
        }
    }
}
