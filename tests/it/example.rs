//! The shipped example config parses and validates, so the README's demo keeps working.

use std::collections::HashMap;
use std::path::Path;

use aibridge::config::Config;
use aibridge::mcp::McpTransport;

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("example/aibridge.toml");
    let config = Config::load(Some(&path), &HashMap::new()).expect("example/aibridge.toml");
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["anthropic", "openai"]);
    assert_eq!(config.mcp.servers.len(), 2);
    assert!(matches!(
        config.mcp.servers[0].transport,
        McpTransport::Stdio { .. }
    ));
    assert!(config.mcp.servers[1].filter.permits("echo"));
    assert!(!config.mcp.servers[1].filter.permits("longRunningOperation"));
}
