//! aibridge: a gateway between AI coding clients and model providers.
//!
//! It bridges the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses APIs,
//! records who used which model with which prompt, tools and tokens, and injects centrally
//! configured MCP tools. [`RequestBridge`] is a `tower::Service` that can be mounted in any
//! hyper or axum application; the `aibridge` binary wraps it with auth, health and metrics.

pub mod record;
