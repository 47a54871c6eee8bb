//! Scripted responses: what a test tells the mock to answer, including transport faults.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// One scripted answer, consumed by the next request to a model route.
#[derive(Debug, Clone)]
pub struct MockResponse {
    /// HTTP status code.
    pub status: u16,
    /// Extra response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body, or a fault to inject instead.
    pub body: MockBody,
}

/// How the body of a scripted response is delivered.
#[derive(Debug, Clone)]
pub enum MockBody {
    /// The whole body at once, with a `content-length`.
    Full(Bytes),
    /// Chunked transfer: each chunk is written after its delay.
    Chunks(Vec<(Duration, Bytes)>),
    /// Close the connection without sending any response.
    ResetBeforeHeaders,
    /// Wait this long before sending the status and headers (the body is then empty).
    StallBeforeHeaders(Duration),
    /// Send the status, headers and these chunks, then abort the connection mid-body.
    CutAfter(Vec<(Duration, Bytes)>),
}

impl MockResponse {
    /// A JSON body with `content-type: application/json`: a `serde_json::Value`, a string or bytes.
    pub fn json(status: u16, body: impl IntoBody) -> MockResponse {
        MockResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: MockBody::Full(body.into_body()),
        }
    }

    /// A JSON body read from `tests/fixtures/<path>`.
    pub fn json_fixture(status: u16, path: &str) -> MockResponse {
        MockResponse::json(status, fixture(path))
    }

    /// A whole SSE transcript, sent as one chunk per event with no delay.
    pub fn sse(transcript: impl Into<Bytes>) -> MockResponse {
        MockResponse::sse_with_delay(transcript, Duration::ZERO)
    }

    /// A whole SSE transcript, one chunk per event, each chunk sent after `delay`.
    pub fn sse_with_delay(transcript: impl Into<Bytes>, delay: Duration) -> MockResponse {
        let chunks = split_sse_events(&transcript.into())
            .into_iter()
            .map(|event| (delay, event))
            .collect();
        MockResponse {
            status: 200,
            headers: sse_headers(),
            body: MockBody::Chunks(chunks),
        }
    }

    /// An SSE transcript read from `tests/fixtures/<path>`, one chunk per event.
    pub fn sse_fixture(path: &str) -> MockResponse {
        MockResponse::sse(fixture(path))
    }

    /// An SSE transcript from `tests/fixtures/<path>` whose connection is aborted after
    /// the first `events` events.
    pub fn sse_fixture_cut_after(path: &str, events: usize) -> MockResponse {
        let mut chunks: Vec<(Duration, Bytes)> = split_sse_events(&fixture(path))
            .into_iter()
            .map(|event| (Duration::ZERO, event))
            .collect();
        chunks.truncate(events);
        MockResponse {
            status: 200,
            headers: sse_headers(),
            body: MockBody::CutAfter(chunks),
        }
    }

    /// A response that is only a transport fault (`ResetBeforeHeaders`, `StallBeforeHeaders`).
    pub fn fault(body: MockBody) -> MockResponse {
        MockResponse {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> MockResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What a scripted body can be made from.
pub trait IntoBody {
    /// The body bytes.
    fn into_body(self) -> Bytes;
}

impl IntoBody for Bytes {
    fn into_body(self) -> Bytes {
        self
    }
}

impl IntoBody for String {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for &'static str {
    fn into_body(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for serde_json::Value {
    fn into_body(self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

impl IntoBody for &serde_json::Value {
    fn into_body(self) -> Bytes {
        Bytes::from(self.to_string())
    }
}

fn sse_headers() -> Vec<(String, String)> {
    vec![
        (
            "content-type".into(),
            "text/event-stream; charset=utf-8".into(),
        ),
        ("cache-control".into(), "no-cache".into()),
    ]
}

/// Reads `tests/fixtures/<path>` relative to the workspace root.
///
/// Panics when the file is missing: a missing fixture is a broken test.
pub fn fixture(path: &str) -> Bytes {
    let full = fixtures_dir().join(path);
    match std::fs::read(&full) {
        Ok(bytes) => Bytes::from(bytes),
        Err(err) => panic!("fixture {}: {err}", full.display()),
    }
}

/// The directory holding the fixtures (`<workspace>/tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

/// Splits an SSE transcript after each blank line (LF or CRLF), keeping the bytes exact.
pub fn split_sse_events(transcript: &Bytes) -> Vec<Bytes> {
    let mut events = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let b = transcript.as_ref();
    while i < b.len() {
        let end = if b[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else if b[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else {
            None
        };
        match end {
            Some(end) => {
                events.push(transcript.slice(start..end));
                start = end;
                i = end;
            }
            None => i += 1,
        }
    }
    if start < b.len() {
        events.push(transcript.slice(start..));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_bytes_and_boundaries() {
        let t = Bytes::from_static(b"event: a\ndata: {}\n\n: c\r\n\r\ndata: x\n\ntail");
        let parts = split_sse_events(&t);
        assert_eq!(
            parts,
            vec![
                Bytes::from_static(b"event: a\ndata: {}\n\n"),
                Bytes::from_static(b": c\r\n\r\n"),
                Bytes::from_static(b"data: x\n\n"),
                Bytes::from_static(b"tail"),
            ]
        );
    }
}
