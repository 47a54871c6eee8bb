//! HTTP/1.1 exchanges on an upstream connection, read and written by the bridge itself.
//!
//! hyper's client connection decodes a response body in its dispatcher and hands every
//! chunk of a chunked body to the response through a channel: about 2,700 instructions per
//! chunk, a fifth of what relaying one event of a stream costs, even when the dispatcher
//! runs in the reader's own task. Here the reader decodes straight from the connection's
//! read buffer, and everything one read brought in (often several events) comes out as one
//! piece of data.
//!
//! What it covers is what an upstream call needs: one request at a time (no pipelining),
//! a request body of known length, and every response framing of RFC 9112 §6.3 (no body
//! for `HEAD`, 1xx, 204 and 304; chunked, with extensions and trailers skipped; a
//! `Content-Length`; or until the connection closes). Interim 1xx responses are skipped. A
//! connection is kept for the next request only when its response said nothing against it
//! (HTTP/1.1, no `Connection: close`), had a length, and was read to its end with nothing
//! after it.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::Connection;

/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields of a response head.
const MAX_HEADERS: usize = 128;
/// How much room a read is given.
const READ_SIZE: usize = 16 * 1024;
/// The longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// The most trailer bytes skipped after a chunked body.
const MAX_TRAILERS: usize = 64 * 1024;

/// Why an HTTP/1.1 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reading from or writing to the connection failed.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before its response was complete.
    #[error("the upstream closed the connection before the response was complete")]
    Incomplete,
    /// The response is not HTTP/1.1 as RFC 9112 has it.
    #[error("malformed HTTP/1.1 response: {0}")]
    Malformed(&'static str),
}

/// How the rest of a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Nothing (more) to read.
    Done,
    /// This many bytes are left.
    Length(u64),
    /// Chunked, at this point of a chunk.
    Chunked(Chunk),
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, in the trailer section (this many bytes of it skipped).
    Trailers(usize),
}

/// A request that failed, and whether none of it had been written (so that it may be sent
/// again on another connection).
#[derive(Debug)]
pub struct SendError {
    /// What went wrong.
    pub error: H1Error,
    /// Nothing of the request reached the connection.
    pub unsent: bool,
}

/// An HTTP/1.1 connection to an upstream.
pub struct H1 {
    /// Boxed: with the TLS state inside it is kilobytes, and it moves with the response.
    io: Pin<Box<TokioIo<Connection>>>,
    buf: BytesMut,
    /// Requests go to a forwarding proxy: absolute-form URIs.
    pub(super) proxied: bool,
    /// Whether the connection may carry another request once the current body is read.
    keep_alive: bool,
}

impl std::fmt::Debug for H1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1")
            .field("buffered", &self.buf.len())
            .field("proxied", &self.proxied)
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}

impl H1 {
    /// A fresh connection.
    pub fn new(io: Connection, proxied: bool) -> H1 {
        H1 {
            io: Box::pin(TokioIo::new(io)),
            buf: BytesMut::with_capacity(READ_SIZE),
            proxied,
            keep_alive: true,
        }
    }

    /// Whether the connection can carry the next request: the last exchange left it open
    /// and the upstream has neither closed it nor sent anything since.
    pub(super) fn reusable(&self) -> bool {
        self.keep_alive && self.buf.is_empty()
    }

    /// Whether this idle connection is still open with nothing unread on it.
    pub(super) async fn ready(&mut self) -> bool {
        if !self.reusable() {
            return false;
        }
        poll_fn(|cx| {
            self.buf.reserve(1);
            // Anything but "nothing yet" (end of stream, stray bytes, an error) means the
            // connection cannot be used.
            Poll::Ready(self.poll_read(cx).is_pending())
        })
        .await
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_read_buf(self.io.as_mut(), cx, &mut self.buf)
    }

    /// Writes a request (its head from `parts`, then `body`) and reads the response head.
    /// The returned framing says how to read the body with [`H1::poll_data`].
    pub(super) async fn send(
        &mut self,
        parts: &http::request::Parts,
        body: &Bytes,
    ) -> Result<(http::response::Parts, Framing), SendError> {
        let head = request_head(parts, body.len());
        let whole = match self.write_request(&head, body).await {
            Ok(whole) => whole,
            // The upstream may have answered and closed before reading the whole request
            // (a 413, a 401): an answer already read wins over the failed write.
            Err(failed) if !failed.unsent && final_head_in(&self.buf) => false,
            Err(failed) => return Err(failed),
        };
        let answer = self
            .read_head(&parts.method)
            .await
            .map_err(|error| SendError {
                error,
                unsent: false,
            });
        // A request cut short leaves the connection out of step: never reused.
        self.keep_alive &= whole && answer.is_ok();
        answer
    }

    /// Writes the request; `false` when the upstream answered before taking all of it (the
    /// answer's head is then in the read buffer). While a write waits for the upstream to
    /// read, the connection is read too: an upstream that answers a large body early and
    /// stops reading would otherwise leave the write waiting for good.
    async fn write_request(&mut self, head: &[u8], body: &[u8]) -> Result<bool, SendError> {
        let total = head.len() + body.len();
        let mut written = 0;
        while written < total {
            let slices = if written < head.len() {
                [IoSlice::new(&head[written..]), IoSlice::new(body)]
            } else {
                [
                    IoSlice::new(&body[written - head.len()..]),
                    IoSlice::new(&[]),
                ]
            };
            let step = poll_fn(
                |cx| match self.io.as_mut().poll_write_vectored(cx, &slices) {
                    Poll::Ready(n) => Poll::Ready(Some(n)),
                    Poll::Pending => match self.poll_early_answer(cx) {
                        Poll::Ready(Ok(())) => Poll::Ready(None),
                        Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                        Poll::Pending => Poll::Pending,
                    },
                },
            )
            .await;
            match step {
                None => return Ok(false),
                Some(Ok(0)) => {
                    return Err(self.failed(io::ErrorKind::WriteZero.into(), written == 0));
                }
                Some(Ok(n)) => written += n,
                Some(Err(e)) => return Err(self.failed(e, written == 0)),
            }
        }
        poll_fn(|cx| self.io.as_mut().poll_flush(cx))
            .await
            .map_err(|e| self.failed(e, false))?;
        Ok(true)
    }

    /// Reads what the upstream sends while the request is still being written: ready once a
    /// final response head (or more than a head may hold) is in the buffer, an error once
    /// the read side ended without one.
    fn poll_early_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if final_head_in(&self.buf) || self.buf.len() > MAX_HEAD {
                return Poll::Ready(Ok(()));
            }
            self.buf.reserve(READ_SIZE);
            match self.poll_read(cx) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection while the request was being sent",
                    )));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn failed(&mut self, error: io::Error, unsent: bool) -> SendError {
        self.keep_alive = false;
        SendError {
            error: error.into(),
            unsent,
        }
    }

    async fn read_head(
        &mut self,
        method: &Method,
    ) -> Result<(http::response::Parts, Framing), H1Error> {
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf)? {
                    Some((len, Head::Interim)) => {
                        self.buf.advance(len);
                        continue;
                    }
                    Some((len, Head::Final(fields))) => {
                        let head = self.buf.split_to(len).freeze();
                        let parts = fields.into_parts(&head)?;
                        let (framing, keep_alive) = framing(method, &parts)?;
                        self.keep_alive = keep_alive;
                        return Ok((parts, framing));
                    }
                    None if self.buf.len() > MAX_HEAD => {
                        return Err(H1Error::Malformed("response head too large"));
                    }
                    None => {}
                }
            }
            self.buf.reserve(READ_SIZE);
            if poll_fn(|cx| self.poll_read(cx)).await? == 0 {
                return Err(H1Error::Incomplete);
            }
        }
    }

    /// The next piece of the body: all that the read buffer holds of it, after one read
    /// from the connection if it held nothing. `None` at the end.
    pub(super) fn poll_data(
        &mut self,
        framing: &mut Framing,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, H1Error>>> {
        loop {
            match self.take_data(framing) {
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if *framing == Framing::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            self.buf.reserve(READ_SIZE);
            match self.poll_read(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    self.keep_alive = false;
                    if *framing == Framing::UntilClose {
                        *framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(H1Error::Incomplete)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.keep_alive = false;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// Takes what the read buffer holds of the body (copied out, so the buffer is reused for
    /// the next read), advancing `framing`.
    fn take_data(&mut self, framing: &mut Framing) -> Result<Option<Bytes>, H1Error> {
        match framing {
            Framing::Done => Ok(None),
            Framing::Length(rest) => {
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(*rest).unwrap_or(usize::MAX));
                if n == 0 {
                    return Ok(None);
                }
                let data = Bytes::copy_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                *rest -= n as u64;
                if *rest == 0 {
                    *framing = Framing::Done;
                }
                Ok(Some(data))
            }
            Framing::UntilClose => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let data = Bytes::copy_from_slice(&self.buf);
                self.buf.clear();
                Ok(Some(data))
            }
            Framing::Chunked(chunk) => {
                let mut out = Vec::new();
                let done = decode_chunks(&mut self.buf, chunk, &mut out)?;
                if done {
                    *framing = Framing::Done;
                }
                Ok((!out.is_empty()).then(|| Bytes::from(out)))
            }
        }
    }
}

/// Decodes as much of a chunked body as `buf` holds into `out`; whether the body ended.
fn decode_chunks(
    buf: &mut BytesMut,
    chunk: &mut Chunk,
    out: &mut Vec<u8>,
) -> Result<bool, H1Error> {
    loop {
        match *chunk {
            Chunk::Size => {
                let Some(eol) = memchr::memchr(b'\n', &buf[..buf.len().min(MAX_CHUNK_LINE)]) else {
                    if buf.len() >= MAX_CHUNK_LINE {
                        return Err(H1Error::Malformed("chunk-size line too long"));
                    }
                    return Ok(false);
                };
                let size = chunk_size(&buf[..eol])?;
                buf.advance(eol + 1);
                *chunk = if size == 0 {
                    Chunk::Trailers(0)
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(rest) => {
                let n = buf.len().min(usize::try_from(rest).unwrap_or(usize::MAX));
                if n == 0 {
                    return Ok(false);
                }
                out.extend_from_slice(&buf[..n]);
                buf.advance(n);
                *chunk = match rest - n as u64 {
                    0 => Chunk::DataEnd,
                    left => Chunk::Data(left),
                };
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(false);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(H1Error::Malformed("chunk data not followed by CRLF"));
                }
                buf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers(skipped) => {
                let Some(eol) = memchr::memchr(b'\n', buf) else {
                    if skipped + buf.len() > MAX_TRAILERS {
                        return Err(H1Error::Malformed("trailer section too large"));
                    }
                    return Ok(false);
                };
                let line = &buf[..eol];
                let blank = line.is_empty() || line == b"\r";
                buf.advance(eol + 1);
                if blank {
                    return Ok(true);
                }
                *chunk = Chunk::Trailers(skipped + eol + 1);
            }
        }
    }
}

/// The size of a chunk-size line (`1a2b;name=value\r`, the `\n` excluded).
fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .iter()
        .position(|&c| c == b';' || c == b' ' || c == b'\t')
        .map_or(line, |end| &line[..end]);
    if digits.is_empty() || digits.len() > 15 {
        return Err(H1Error::Malformed("bad chunk size"));
    }
    let mut size = 0u64;
    for &c in digits {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(H1Error::Malformed("bad chunk size")),
        };
        size = size * 16 + u64::from(digit);
    }
    Ok(size)
}

/// The request line and header section of a request whose body is `body_len` bytes long.
/// `Content-Length` is the bridge's own (the body is complete), and any
/// `Transfer-Encoding` the caller left is dropped with it.
fn request_head(parts: &http::request::Parts, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    if parts.uri.scheme().is_some() {
        out.extend_from_slice(parts.uri.to_string().as_bytes());
    } else {
        // An empty path is `/` on the wire (`?q=1` alone is no request target).
        let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
        if !target.starts_with('/') && target != "*" {
            out.push(b'/');
        }
        out.extend_from_slice(target.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    );
    if body_len > 0 || !bodiless {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A parsed response head.
enum Head {
    /// A 1xx other than 101: skipped.
    Interim,
    /// The response.
    Final(Fields),
}

/// A final response head, with its header values as positions in the head's bytes.
struct Fields {
    status: StatusCode,
    version: Version,
    headers: Vec<(HeaderName, std::ops::Range<usize>)>,
}

impl Fields {
    fn into_parts(self, head: &Bytes) -> Result<http::response::Parts, H1Error> {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, range) in self.headers {
            let value = HeaderValue::from_maybe_shared(head.slice(range))
                .map_err(|_| H1Error::Malformed("bad header value"))?;
            headers.append(name, value);
        }
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = self.status;
        parts.version = self.version;
        parts.headers = headers;
        Ok(parts)
    }
}

/// Parses the response head at the start of `buf`: its length and what it is, or `None`
/// when more bytes are needed.
/// Whether `buf` starts with a whole final response head (after any interim ones), or with
/// something that is not a response head at all (left for [`H1::read_head`] to report).
fn final_head_in(buf: &[u8]) -> bool {
    let mut at = 0;
    loop {
        match parse_head(&buf[at..]) {
            Ok(Some((len, Head::Interim))) => at += len,
            Ok(Some((_, Head::Final(_)))) | Err(_) => return true,
            Ok(None) => return false,
        }
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, H1Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Malformed("too many header fields"));
        }
        Err(_) => return Err(H1Error::Malformed("invalid response head")),
    };
    let code = response.code.unwrap_or(0);
    if (100..200).contains(&code) && code != 101 {
        return Ok(Some((len, Head::Interim)));
    }
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Malformed("bad status"))?;
    if code == 101 {
        return Err(H1Error::Malformed("unexpected 101 Switching Protocols"));
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let base = buf.as_ptr() as usize;
    let mut headers = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| H1Error::Malformed("bad header name"))?;
        // httparse hands out slices of `buf`: their offsets locate the values.
        let start = field.value.as_ptr() as usize - base;
        headers.push((name, start..start + field.value.len()));
    }
    Ok(Some((
        len,
        Head::Final(Fields {
            status,
            version,
            headers,
        }),
    )))
}

/// How the body of a response to `method` is delimited (RFC 9112 §6.3), and whether the
/// connection can be reused after it.
fn framing(method: &Method, parts: &http::response::Parts) -> Result<(Framing, bool), H1Error> {
    let headers = &parts.headers;
    let mut keep_alive =
        parts.version == Version::HTTP_11 && !has_token(headers, CONNECTION, "close");
    let status = parts.status;
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Done, keep_alive));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        let chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .is_some_and(|last| last.eq_ignore_ascii_case("chunked"));
        if chunked {
            return Ok((Framing::Chunked(Chunk::Size), keep_alive));
        }
        return Ok((Framing::UntilClose, false));
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for piece in value.to_str().unwrap_or("").split(',') {
            let n = piece
                .trim()
                .parse::<u64>()
                .map_err(|_| H1Error::Malformed("bad Content-Length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(H1Error::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    match length {
        Some(0) => Ok((Framing::Done, keep_alive)),
        Some(n) => Ok((Framing::Length(n), keep_alive)),
        None => {
            keep_alive = false;
            Ok((Framing::UntilClose, keep_alive))
        }
    }
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use http::Uri;

    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), H1Error> {
        let mut buf = BytesMut::new();
        let mut chunk = Chunk::Size;
        let mut out = Vec::new();
        let mut done = false;
        for piece in pieces {
            buf.extend_from_slice(piece);
            done = decode_chunks(&mut buf, &mut chunk, &mut out)?;
            if done {
                assert!(buf.is_empty(), "bytes after the body");
            }
        }
        Ok((out, done))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let body: &[u8] =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-trailer: t\r\n\r\n";
        let expected = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        assert_eq!(decode_all(&[body]).unwrap(), (expected.clone(), true));
        for a in 0..body.len() {
            for b in a..body.len() {
                let got = decode_all(&[&body[..a], &body[a..b], &body[b..]]).unwrap();
                assert_eq!(got, (expected.clone(), true), "split at {a}, {b}");
            }
        }
        let (partial, done) = decode_all(&[b"a\r\n01234"]).unwrap();
        assert_eq!((partial.as_slice(), done), (&b"01234"[..], false));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\ndata\r\n"[..],
            b"\r\n",
            b"3\r\nabcXY",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(
                decode_all(&[bad]).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_CHUNK_LINE];
        assert!(decode_all(&[&long]).is_err());
    }

    fn head(text: &str) -> http::response::Parts {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        match parse_head(&bytes).unwrap() {
            Some((len, Head::Final(fields))) => {
                assert_eq!(len, bytes.len());
                fields.into_parts(&bytes).unwrap()
            }
            _ => panic!("not a final head: {text}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let post = Method::POST;
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n",
                Framing::Length(12),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Framing::Done,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
                Framing::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\ncontent-length: 3\r\n\r\n",
                Framing::Chunked(Chunk::Size),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                Framing::UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose, false),
            ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Done, true),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                Framing::Done,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
                Framing::Length(1),
                false,
            ),
        ];
        for (text, expected, reuse) in cases {
            let parts = head(text);
            assert_eq!(framing(&post, &parts).unwrap(), (expected, reuse), "{text}");
        }
        let parts = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert_eq!(
            framing(&Method::HEAD, &parts).unwrap(),
            (Framing::Done, true)
        );
        let conflicting = head("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n");
        assert!(framing(&post, &conflicting).is_err());
        assert!(
            framing(
                &post,
                &head("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n")
            )
            .is_err()
        );
    }

    #[test]
    fn heads_keep_status_and_headers_and_skip_interim_responses() {
        let parts =
            head("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nx-a: 1\r\nx-a: 2\r\n\r\n");
        assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(parts.headers["retry-after"], "7");
        assert_eq!(parts.headers.get_all("x-a").iter().count(), 2);
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(
            parse_head(interim).unwrap(),
            Some((25, Head::Interim))
        ));
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn request_heads_carry_their_own_length() {
        let mut req = http::Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = "/v1/messages?beta=true".parse().unwrap();
        req.headers_mut()
            .insert("host", HeaderValue::from_static("api.example"));
        req.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        req.headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let (parts, ()) = req.into_parts();
        assert_eq!(
            request_head(&parts, 2),
            b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: api.example\r\ncontent-length: 2\r\n\r\n"
        );
        let (get, ()) = http::Request::get("http://u.example:8080/v1/models")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            request_head(&get, 0),
            b"GET http://u.example:8080/v1/models HTTP/1.1\r\n\r\n"
        );
        // `http` keeps the path of `http://host?q` empty: the target is `?probe=1`.
        let (mut origin, ()) = http::Request::head("http://u.example?probe=1")
            .body(())
            .unwrap()
            .into_parts();
        origin.uri = Uri::from(origin.uri.path_and_query().unwrap().clone());
        assert_eq!(origin.uri.path_and_query().unwrap().as_str(), "?probe=1");
        assert_eq!(request_head(&origin, 0), b"HEAD /?probe=1 HTTP/1.1\r\n\r\n");
    }
}
