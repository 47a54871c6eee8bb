//! An MCP server with test tools, for the bridge tests.
