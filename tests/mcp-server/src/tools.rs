//! The tool definitions and what each one does.

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolResult, ContentBlock, EmbeddedResource, JsonObject, ResourceContents, Tool,
};
use serde_json::{Value, json};

/// A 1×1 transparent PNG, base64.
pub const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

fn text_schema() -> Arc<JsonObject> {
    schema(json!({
        "type": "object",
        "properties": { "text": { "type": "string" } },
        "required": ["text"]
    }))
}

fn empty_schema() -> Arc<JsonObject> {
    schema(json!({ "type": "object", "properties": {} }))
}

/// Every tool the server lists, in a fixed order.
pub fn list(extra_tools: &[String], extra_enabled: bool) -> Vec<Tool> {
    let mut tools = vec![
        Tool::new("echo", "Returns its text.", text_schema()),
        Tool::new(
            "add",
            "Adds two integers.",
            schema(json!({
                "type": "object",
                "properties": { "a": { "type": "integer" }, "b": { "type": "integer" } },
                "required": ["a", "b"]
            })),
        ),
        Tool::new(
            "fail",
            "Always fails with an isError result.",
            schema(json!({ "type": "object", "properties": { "message": { "type": "string" } } })),
        ),
        Tool::new(
            "slow",
            "Sleeps for ms milliseconds, then answers.",
            schema(json!({
                "type": "object",
                "properties": { "ms": { "type": "integer", "minimum": 0 } },
                "required": ["ms"]
            })),
        ),
        Tool::new("image", "Returns a tiny PNG image.", empty_schema()),
        Tool::new(
            "resource",
            "Returns an embedded text resource and a blob.",
            empty_schema(),
        ),
        Tool::new("pid", "Returns the server's process id.", empty_schema()),
        Tool::new(
            "toggle",
            "Adds or removes the tool `extra` and notifies the client.",
            empty_schema(),
        ),
    ];
    if extra_enabled {
        tools.push(Tool::new(
            "extra",
            "Appears after toggle; echoes.",
            text_schema(),
        ));
    }
    for name in extra_tools {
        tools.push(Tool::new(
            name.clone(),
            "An extra echo tool.",
            text_schema(),
        ));
    }
    tools
}

/// A successful result holding one text block.
pub fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn int_arg(args: &JsonObject, key: &str) -> Result<i64, ErrorData> {
    args.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| ErrorData::invalid_params(format!("`{key}` must be an integer"), None))
}

/// Run one of the fixed tools.
pub async fn call(name: &str, args: &JsonObject) -> Result<CallToolResult, ErrorData> {
    match name {
        "echo" => {
            let text_arg = args
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| ErrorData::invalid_params("`text` must be a string", None))?;
            Ok(text(text_arg))
        }
        "add" => {
            let sum = int_arg(args, "a")?.saturating_add(int_arg(args, "b")?);
            Ok(text(sum.to_string()))
        }
        "fail" => {
            let message = args
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the tool failed on purpose");
            Ok(CallToolResult::error(vec![ContentBlock::text(message)]))
        }
        "slow" => {
            let ms = u64::try_from(int_arg(args, "ms")?).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(text(format!("slept {ms}ms")))
        }
        "image" => Ok(CallToolResult::success(vec![ContentBlock::image(
            TINY_PNG,
            "image/png",
        )])),
        "resource" => Ok(CallToolResult::success(vec![
            ContentBlock::Resource(EmbeddedResource::new(ResourceContents::text(
                "hello from a resource",
                "test://resource/text",
            ))),
            ContentBlock::Resource(EmbeddedResource::new(
                ResourceContents::blob("AAEC", "test://resource/blob")
                    .with_mime_type("application/octet-stream"),
            )),
        ])),
        "pid" => Ok(text(std::process::id().to_string())),
        other => Err(ErrorData::invalid_params(
            format!("unknown tool `{other}`"),
            None,
        )),
    }
}
