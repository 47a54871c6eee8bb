//! Which coding client sent a request, and its session id.

use http::HeaderMap;

/// Names a client from its `User-Agent` and telltale headers.
pub fn detect(headers: &HeaderMap) -> &'static str {
    let ua = header(headers, "user-agent").unwrap_or("");
    let ua_lower = ua.to_ascii_lowercase();
    let originator = header(headers, "originator")
        .unwrap_or("")
        .to_ascii_lowercase();
    if ua_lower.starts_with("claude-cli/")
        || ua_lower.contains("claude-code")
        || headers.contains_key("x-claude-code-session-id")
    {
        "claude-code"
    } else if originator.starts_with("codex") || ua_lower.starts_with("codex") {
        "codex"
    } else if ua_lower.contains("cursor")
        || headers.keys().any(|k| k.as_str().starts_with("x-cursor-"))
    {
        "cursor"
    } else if ua_lower.starts_with("zed/") || ua_lower.contains(" zed/") {
        "zed"
    } else if ua_lower.contains("copilot") || headers.contains_key("copilot-integration-id") {
        "copilot"
    } else if ua_lower.contains("kilo-code") || ua_lower.contains("kilocode") {
        "kilo"
    } else if ua_lower.contains("roo-code") || ua_lower.contains("roocode") {
        "roo"
    } else if ua.starts_with("Anthropic/") || ua.starts_with("AsyncAnthropic/") {
        "anthropic-sdk"
    } else if ua.starts_with("OpenAI/") || ua.starts_with("AsyncOpenAI/") {
        "openai-sdk"
    } else {
        "unknown"
    }
}

/// The session id from headers: Claude Code's `X-Claude-Code-Session-Id`, Codex's
/// `session_id` / `session-id`.
pub fn session_from_headers(headers: &HeaderMap) -> Option<String> {
    ["x-claude-code-session-id", "session_id", "session-id"]
        .iter()
        .find_map(|name| header(headers, name))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The session id inside Anthropic's `metadata.user_id`: a JSON string with `session_id`,
/// or the legacy `user_<hash>_account_<uuid>_session_<uuid>` form.
pub fn session_from_user_id(user_id: &str) -> Option<String> {
    if user_id.starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(user_id).ok()?;
        return value
            .get("session_id")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
    }
    let (_, session) = user_id.rsplit_once("_session_")?;
    (!session.is_empty()).then(|| session.to_owned())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn detects_clients() {
        assert_eq!(
            detect(&h(&[("user-agent", "claude-cli/2.0.14 (external, cli)")])),
            "claude-code"
        );
        assert_eq!(
            detect(&h(&[
                ("user-agent", "codex_cli_rs/0.98.0 (Debian)"),
                ("originator", "codex_exec")
            ])),
            "codex"
        );
        assert_eq!(detect(&h(&[("originator", "codex_cli_rs")])), "codex");
        assert_eq!(detect(&h(&[("user-agent", "Zed/0.200.1")])), "zed");
        assert_eq!(
            detect(&h(&[("user-agent", "Anthropic/Python 0.75.0")])),
            "anthropic-sdk"
        );
        assert_eq!(
            detect(&h(&[("user-agent", "OpenAI/Python 2.8.0")])),
            "openai-sdk"
        );
        assert_eq!(detect(&h(&[("user-agent", "curl/8")])), "unknown");
    }

    #[test]
    fn detects_editor_clients_by_user_agent_or_header() {
        for (headers, client) in [
            (vec![("user-agent", "Cursor/1.7.28")], "cursor"),
            (
                vec![("user-agent", "node"), ("x-cursor-checksum", "abc")],
                "cursor",
            ),
            (vec![("user-agent", "GitHubCopilotChat/0.32.0")], "copilot"),
            (
                vec![
                    ("user-agent", "node"),
                    ("copilot-integration-id", "vscode-chat"),
                ],
                "copilot",
            ),
            (vec![("user-agent", "Kilo-Code/4.90.0")], "kilo"),
            (vec![("user-agent", "KiloCode/4.90.0")], "kilo"),
            (vec![("user-agent", "Roo-Code/3.28.0")], "roo"),
            (vec![("user-agent", "RooCode/3.28.0")], "roo"),
            (vec![("user-agent", "Mozilla/5.0 Zed/0.201.0")], "zed"),
            // Claude Code's session header wins over an SDK user agent.
            (
                vec![
                    ("user-agent", "Anthropic/JS 0.60.0"),
                    ("x-claude-code-session-id", "s"),
                ],
                "claude-code",
            ),
        ] {
            assert_eq!(detect(&h(&headers)), client, "{headers:?}");
        }
    }

    #[test]
    fn sessions() {
        assert_eq!(
            session_from_headers(&h(&[("session_id", "abc")])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            session_from_user_id(r#"{"device_id":"d","session_id":"5f0c"}"#).as_deref(),
            Some("5f0c")
        );
        assert_eq!(
            session_from_user_id("user_ab12_account_1111_session_2222-33").as_deref(),
            Some("2222-33")
        );
        assert_eq!(session_from_user_id("plain"), None);
    }
}
