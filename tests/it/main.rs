//! The integration tests: one binary, so two cores link it once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on broken fixtures"
)]

mod anthropic;
mod auth;
mod cli;
mod client_faults;
mod embedded;
mod example;
mod mcp_cli;
mod mcp_loop;
mod mcp_loop_openai;
mod mcp_loop_stream;
mod mcp_registry;
mod openai_chat;
mod openai_responses;
mod proxy;
mod relay;
mod resilience;
mod secrets;
mod shutdown;
mod support;
mod upstream_pool;

mod audit_bridge;
mod audit_cli;
mod audit_sql;
mod pipeline;
mod testdb;
