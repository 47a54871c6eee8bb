//! The neutral shape of a tool result, converted from MCP content blocks.
//!
//! Each wire API renders it in its own way (Anthropic `tool_result` blocks with images,
//! OpenAI tool messages as text), so this keeps only what they can use.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde::Serialize;

/// What an injected tool call produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallResult {
    /// The content blocks, in the server's order.
    pub content: Vec<ToolResultContent>,
    /// The call failed: the tool reported an error (`isError`), or `invocation_error` is
    /// set. The model should see it as a failed call.
    pub is_error: bool,
    /// The call did not complete (unknown tool, server unreachable, timeout, protocol
    /// error). Safe to show to the model and to record: it holds no secrets.
    pub invocation_error: Option<String>,
    /// The server's location (URL or `stdio:<command>`), for the tool-usage record.
    pub server_url: String,
}

/// One block of a tool result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// An image, base64-encoded.
    Image {
        /// Base64 data.
        data: String,
        /// E.g. `image/png`.
        mime_type: String,
    },
    /// An embedded resource: text or a base64 blob.
    Resource {
        /// The resource URI.
        uri: String,
        /// Its MIME type, if given.
        mime_type: Option<String>,
        /// Text contents.
        text: Option<String>,
        /// Base64 contents.
        blob: Option<String>,
    },
}

impl ToolCallResult {
    /// A result for a call that did not complete.
    pub fn invocation_error(message: impl Into<String>, server_url: impl Into<String>) -> Self {
        Self {
            content: Vec::new(),
            is_error: true,
            invocation_error: Some(message.into()),
            server_url: server_url.into(),
        }
    }

    /// Convert an MCP result.
    pub fn from_mcp(result: CallToolResult, server_url: impl Into<String>) -> Self {
        let mut content: Vec<ToolResultContent> =
            result.content.into_iter().map(convert_block).collect();
        // Structured output only: the model still needs to see it.
        if content.is_empty()
            && let Some(structured) = result.structured_content
        {
            content.push(ToolResultContent::Text(structured.to_string()));
        }
        Self {
            content,
            is_error: result.is_error.unwrap_or(false),
            invocation_error: None,
            server_url: server_url.into(),
        }
    }

    /// Everything as one text, for wire APIs whose tool results are strings. Images and
    /// blobs become short placeholders; an invocation error becomes its message.
    pub fn to_text(&self) -> String {
        if let Some(error) = &self.invocation_error {
            return error.clone();
        }
        let parts: Vec<String> = self
            .content
            .iter()
            .map(ToolResultContent::to_text)
            .collect();
        parts.join("\n")
    }
}

impl ToolResultContent {
    /// The block as text: an image or a blob as a short placeholder, a text resource as
    /// its URI and text.
    pub fn to_text(&self) -> String {
        match self {
            ToolResultContent::Text(text) => text.clone(),
            ToolResultContent::Image { mime_type, .. } => format!("[image: {mime_type}]"),
            ToolResultContent::Resource {
                uri, text: Some(t), ..
            } => format!("[resource {uri}]\n{t}"),
            ToolResultContent::Resource { uri, mime_type, .. } => format!(
                "[resource {uri}: {}]",
                mime_type.as_deref().unwrap_or("binary")
            ),
        }
    }
}

fn convert_block(block: ContentBlock) -> ToolResultContent {
    match block {
        ContentBlock::Text(text) => ToolResultContent::Text(text.text),
        ContentBlock::Image(image) => ToolResultContent::Image {
            data: image.data,
            mime_type: image.mime_type,
        },
        // No provider takes audio in a tool result; say what was there.
        ContentBlock::Audio(audio) => {
            ToolResultContent::Text(format!("[audio: {} omitted]", audio.mime_type))
        }
        ContentBlock::Resource(embedded) => match embedded.resource {
            ResourceContents::TextResourceContents {
                uri,
                mime_type,
                text,
                ..
            } => ToolResultContent::Resource {
                uri,
                mime_type,
                text: Some(text),
                blob: None,
            },
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => ToolResultContent::Resource {
                uri,
                mime_type,
                text: None,
                blob: Some(blob),
            },
            other => ToolResultContent::Text(serde_json::to_string(&other).unwrap_or_default()),
        },
        ContentBlock::ResourceLink(link) => {
            let mut text = format!("[resource link: {}", link.uri);
            if let Some(mime) = &link.mime_type {
                text.push_str(&format!(" ({mime})"));
            }
            text.push(']');
            ToolResultContent::Text(text)
        }
        // Newer content kinds: keep them visible to the model as JSON.
        other => ToolResultContent::Text(serde_json::to_string(&other).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{AudioContent, ContentBlock, Resource};
    use serde_json::json;

    use super::*;

    #[test]
    fn structured_only_results_become_text() {
        let mut result = CallToolResult::success(Vec::new());
        result.structured_content = Some(json!({"temperature": 21}));
        let converted = ToolCallResult::from_mcp(result, "stdio:x");
        assert_eq!(
            converted.content,
            vec![ToolResultContent::Text(r#"{"temperature":21}"#.into())]
        );
        assert!(!converted.is_error);
    }

    #[test]
    fn audio_and_links_are_described() {
        let link = Resource::new("file:///a.txt", "a");
        let result = CallToolResult::error(vec![
            ContentBlock::Audio(AudioContent::new("AAAA", "audio/wav")),
            ContentBlock::ResourceLink(link),
        ]);
        let converted = ToolCallResult::from_mcp(result, "u");
        assert!(converted.is_error);
        assert_eq!(
            converted.to_text(),
            "[audio: audio/wav omitted]\n[resource link: file:///a.txt]"
        );
    }

    #[test]
    fn invocation_errors_render_as_their_message() {
        let failed = ToolCallResult::invocation_error("timed out", "u");
        assert!(failed.is_error);
        assert_eq!(failed.to_text(), "timed out");
    }
}
