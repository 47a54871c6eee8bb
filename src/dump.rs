//! API dumps for debugging: with a provider's `dump_dir` (or `AIBRIDGE_DUMP_DIR`) set, each
//! bridged or passed-through exchange is written to one file — every upstream request with
//! its headers and body, then each response's status, headers and body as received (a
//! stream chunk by chunk). Secret headers are masked to a hint.
//!
//! Meant for debugging, not production: each chunk costs a small synchronous write.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use http::HeaderMap;

use crate::secret::mask;

/// One exchange's dump file.
#[derive(Debug)]
pub struct Dump {
    file: Option<File>,
    path: PathBuf,
}

/// Whether a header carries a credential.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["key", "token", "secret", "auth", "password"]
        .iter()
        .any(|word| name.contains(word))
}

/// A header value as it may be shown: secrets masked to a hint.
pub fn shown_value(name: &str, value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    if !is_secret_header(name) {
        return text.into_owned();
    }
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            format!("{scheme} {}", mask(token))
        }
        _ => mask(&text),
    }
}

impl Dump {
    /// Creates `<dir>/<id>-<provider>-<what>.http`. A dump that cannot be written is
    /// logged once and skipped: debugging aids never fail a request.
    pub fn open(dir: &Path, id: &str, provider: &str, what: &str) -> Dump {
        let path = dir.join(format!("{id}-{provider}-{what}.http"));
        let file = std::fs::create_dir_all(dir)
            .and_then(|()| File::create(&path))
            .map_err(
                |e| tracing::warn!(path = %path.display(), error = %e, "cannot write API dump"),
            )
            .ok();
        Dump { file, path }
    }

    /// Where the dump goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(file) = &mut self.file
            && let Err(e) = file.write_all(bytes)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "API dump stopped");
            self.file = None;
        }
    }

    fn headers(&mut self, headers: &HeaderMap) {
        let mut text = String::new();
        for (name, value) in headers {
            text.push_str(name.as_str());
            text.push_str(": ");
            text.push_str(&shown_value(name.as_str(), value.as_bytes()));
            text.push('\n');
        }
        text.push('\n');
        self.write(text.as_bytes());
    }

    /// An upstream request.
    pub fn request(&mut self, method: &str, url: &str, headers: &HeaderMap, body: &[u8]) {
        self.write(format!(">>> {method} {url}\n").as_bytes());
        self.headers(headers);
        self.write(body);
        self.write(b"\n\n");
    }

    /// An upstream response's status and headers.
    pub fn response(&mut self, status: u16, headers: &HeaderMap) {
        self.write(format!("<<< {status}\n").as_bytes());
        self.headers(headers);
    }

    /// Response body bytes, as received.
    pub fn body(&mut self, chunk: &[u8]) {
        self.write(chunk);
    }

    /// A line about what happened (a transport error, a retry, an open circuit).
    pub fn note(&mut self, text: &str) {
        self.write(format!("\n### {text}\n").as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_show_only_a_hint() {
        assert_eq!(
            shown_value("Authorization", b"Bearer sk-proj-1234567890abcdef"),
            "Bearer sk-p…cdef"
        );
        assert_eq!(
            shown_value("x-api-key", b"sk-ant-api03-abcdefgh"),
            "sk-a…efgh"
        );
        assert_eq!(shown_value("x-custom-token", b"short"), "…");
        assert_eq!(
            shown_value("content-type", b"application/json"),
            "application/json"
        );
    }

    #[test]
    fn a_dump_holds_request_and_response() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Dump::open(&dir.path().join("sub"), "id1", "anthropic", "messages");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "sk-ant-api03-secretsecret".parse().unwrap());
        d.request("POST", "http://up/v1/messages", &h, b"{}");
        d.response(200, &HeaderMap::new());
        d.body(b"data: x\n\n");
        let text = std::fs::read_to_string(d.path()).unwrap();
        assert!(text.starts_with(">>> POST http://up/v1/messages\nx-api-key: sk-a…cret\n"));
        assert!(text.ends_with("<<< 200\n\ndata: x\n\n"), "{text}");
        assert!(!text.contains("secretsecret"));
    }
}
