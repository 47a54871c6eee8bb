//! Which coding client sent a request, and its session id.

use http::HeaderMap;

/// Names a client from its `User-Agent` and telltale headers.
pub fn detect(headers: &HeaderMap) -> &'static str {
    // Matched case-insensitively in place: this runs on every request, and a lower-cased
    // copy of each header cost an allocation apiece.
    let ua = header(headers, "user-agent").unwrap_or("").as_bytes();
    let originator = header(headers, "originator").unwrap_or("").as_bytes();
    if starts_with_ci(ua, b"claude-cli/")
        || contains_ci(ua, b"claude-code")
        || headers.contains_key("x-claude-code-session-id")
    {
        "claude-code"
    } else if starts_with_ci(originator, b"codex") || starts_with_ci(ua, b"codex") {
        "codex"
    } else if contains_ci(ua, b"cursor")
        || headers.keys().any(|k| k.as_str().starts_with("x-cursor-"))
    {
        "cursor"
    } else if starts_with_ci(ua, b"zed/") || contains_ci(ua, b" zed/") {
        "zed"
    } else if contains_ci(ua, b"copilot") || headers.contains_key("copilot-integration-id") {
        "copilot"
    } else if contains_ci(ua, b"kilo-code") || contains_ci(ua, b"kilocode") {
        "kilo"
    } else if contains_ci(ua, b"roo-code") || contains_ci(ua, b"roocode") {
        "roo"
    } else if ua.starts_with(b"Anthropic/") || ua.starts_with(b"AsyncAnthropic/") {
        "anthropic-sdk"
    } else if ua.starts_with(b"OpenAI/") || ua.starts_with(b"AsyncOpenAI/") {
        "openai-sdk"
    } else {
        "unknown"
    }
}

/// Whether `hay` starts with `needle` (lower-case ASCII), ignoring ASCII case.
fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

/// Whether `hay` contains `needle` (lower-case ASCII), ignoring ASCII case.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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
    fn client_names_match_in_any_case_and_not_past_the_end() {
        for (ua, client) in [
            ("Claude-CLI/2.0.14", "claude-code"),
            ("my-CLAUDE-Code-wrapper", "claude-code"),
            ("CODEX_CLI_RS/0.98", "codex"),
            ("x/1 CURSOR", "cursor"),
            ("ZED/0.200", "zed"),
            ("cursorless", "cursor"),
            // Needles longer than the whole header, or cut off at its end, do not match.
            ("zed", "unknown"),
            ("kilo-cod", "unknown"),
            ("", "unknown"),
            // The SDKs' prefixes are matched as they send them.
            ("anthropic/Python 0.75.0", "unknown"),
        ] {
            assert_eq!(detect(&h(&[("user-agent", ua)])), client, "{ua}");
        }
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
