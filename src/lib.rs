//! aibridge: a gateway between AI coding clients and model providers.
//!
//! It bridges the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses APIs,
//! records who used which model with which prompt, tools and tokens, and injects centrally
//! configured MCP tools. [`RequestBridge`] is a `tower::Service` that can be mounted in any
//! hyper or axum application; the `aibridge` binary wraps it with auth, health and metrics.

pub mod actor;
pub mod api;
pub mod audit;
pub mod breaker;
pub mod bridge;
pub mod config;
pub mod dump;
pub mod duration;
pub mod intercept;
pub mod mcp;
pub mod metrics;
pub mod passthrough;
pub mod provider;
pub mod record;
pub mod resilience;
pub mod secret;
pub mod server;
pub mod sse;
pub mod upstream;

pub use actor::{Actor, Authenticator};

/// A hash map for the maps looked up on every request whose keys come from the
/// configuration or are bounded (upstreams, providers, capped model labels, record ids):
/// foldhash hashes a short key in a few instructions where the standard SipHash takes
/// hundreds, and its per-map random seed still spreads keys a client chose.
pub(crate) type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set that goes with [`FastHashMap`].
pub(crate) type FastHashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
pub use bridge::{BridgeOptions, RequestBridge};
pub use config::Config;
pub use record::{Record, Recorder};
