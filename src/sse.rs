//! Server-sent events framing: splits a byte stream into events while keeping each event's
//! exact bytes, so unchanged events are relayed as received.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// The largest event kept whole for observation. A longer run without a blank line is
/// passed on in pieces (still byte-exact), so a broken upstream cannot grow memory without
/// bound.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Where a line after the first might start an `event` field (then the slow path decides).
/// One `memmem` search of the data line costs less than finding each line's end.
static LATER_EVENT_LINE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"event"));

/// One event: its raw bytes, including the blank line that ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The bytes as received.
    pub raw: Bytes,
}

impl SseEvent {
    /// An event from complete raw bytes.
    pub fn new(raw: Bytes) -> Self {
        Self { raw }
    }

    /// The `(field, value)` lines of the event, comments skipped.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        lines(&self.raw)
            .filter(|line| !line.is_empty() && line[0] != b':')
            .map(|line| match memchr::memchr(b':', line) {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (line, &line[line.len()..]),
            })
    }

    /// The `event:` field, if any (the last one, as the SSE spec says).
    pub fn event_type(&self) -> Option<&str> {
        self.event_name()
            .and_then(|name| std::str::from_utf8(name).ok())
    }

    /// [`event_type`](Self::event_type) as bytes: observers compare it with the names they
    /// know, which needs no UTF-8 check (a third of the cost of deciding an event's type).
    pub fn event_name(&self) -> Option<&[u8]> {
        // Providers send `event:` as the first line: when no later line could be another
        // `event` field, that line is the answer without splitting the data lines into fields.
        if let Some(rest) = self.raw.strip_prefix(b"event:") {
            let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
            if LATER_EVENT_LINE.find(&rest[end..]).is_none() {
                let value = &rest[..end];
                return Some(value.strip_prefix(b" ").unwrap_or(value));
            }
        }
        self.fields()
            .filter(|(name, _)| *name == b"event")
            .last()
            .map(|(_, value)| value)
    }

    /// The `data:` lines joined by `\n`, if any; borrowed when there is one.
    pub fn data(&self) -> Option<Cow<'_, str>> {
        let mut out: Option<Cow<'_, str>> = None;
        for (name, value) in self.fields() {
            if name != b"data" {
                continue;
            }
            let value = std::str::from_utf8(value).ok()?;
            out = Some(match out {
                None => Cow::Borrowed(value),
                Some(prev) => {
                    let mut joined = prev.into_owned();
                    joined.push('\n');
                    joined.push_str(value);
                    Cow::Owned(joined)
                }
            });
        }
        out
    }
}

/// The pieces of `raw` between `\n` and `\r` bytes (as `split` on either would give them),
/// found with a vectorised search: observers look at every event of every stream.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr2(b'\n', b'\r', text) {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Splits a byte stream into [`SseEvent`]s. Feed chunks with [`push`](Self::push), take
/// events with [`next_event`](Self::next_event), and at the end take what is left with
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct SseDecoder {
    buf: BytesMut,
    scan_from: usize,
    max_event: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    /// A decoder that keeps at most `max_event` bytes of an unfinished event.
    pub fn new(max_event: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            scan_from: 0,
            max_event: max_event.max(16),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, or an oversized piece, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        match find_event_end(&self.buf, self.scan_from) {
            Some(end) => {
                self.scan_from = 0;
                Some(SseEvent::new(self.buf.split_to(end).freeze()))
            }
            None if self.buf.len() > self.max_event => {
                // Keep the last bytes: they may begin the blank line that ends the event.
                let cut = self.buf.len() - 3;
                self.scan_from = 0;
                Some(SseEvent::new(self.buf.split_to(cut).freeze()))
            }
            None => {
                self.scan_from = self.buf.len().saturating_sub(4);
                None
            }
        }
    }

    /// Whatever is left after the stream ended (an event without its blank line).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.scan_from = 0;
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// Bytes held for an unfinished event.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Index just past the blank line that ends the first event, if the buffer holds one.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        // Jump to the next `\n` or `\r`.
        i += memchr::memchr2(b'\n', b'\r', buf.get(i..)?)?;
        let after_terminator = if buf[i] == b'\n' {
            i + 1
        } else {
            match buf.get(i + 1) {
                None => return None,
                Some(b'\n') => i + 2,
                Some(_) => i + 1,
            }
        };
        // An empty line right after a line terminator ends the event.
        match buf.get(after_terminator) {
            None => return None,
            Some(b'\n') => return Some(after_terminator + 1),
            Some(b'\r') => match buf.get(after_terminator + 1) {
                None => return None,
                Some(b'\n') => return Some(after_terminator + 2),
                Some(_) => return Some(after_terminator + 1),
            },
            Some(_) => i = after_terminator,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<Bytes>) {
        let mut d = SseDecoder::default();
        let mut events = Vec::new();
        for chunk in chunks {
            d.push(chunk);
            while let Some(e) = d.next_event() {
                events.push(e);
            }
        }
        let rest = d.finish();
        (events, rest)
    }

    #[test]
    fn splits_events_and_keeps_bytes() {
        let stream =
            b"event: a\ndata: {\"x\":1}\n\n: comment\n\nevent: b\r\ndata: 2\r\n\r\ndata: tail";
        let (events, rest) = decode_all(&[stream]);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event_type(), Some("a"));
        assert_eq!(events[0].data().as_deref(), Some("{\"x\":1}"));
        assert_eq!(events[1].data(), None);
        assert_eq!(events[2].event_type(), Some("b"));
        assert_eq!(rest.as_deref(), Some(&b"data: tail"[..]));
        let joined: Vec<u8> = events
            .iter()
            .flat_map(|e| e.raw.to_vec())
            .chain(rest.unwrap().to_vec())
            .collect();
        assert_eq!(joined, stream.to_vec());
    }

    #[test]
    fn the_last_event_field_names_the_event() {
        let ty = |raw: &'static [u8]| {
            SseEvent::new(Bytes::from_static(raw))
                .event_type()
                .map(str::to_owned)
        };
        assert_eq!(ty(b"event: a\ndata: x\n\n").as_deref(), Some("a"));
        assert_eq!(ty(b"event:a\r\ndata: x\r\n\r\n").as_deref(), Some("a"));
        assert_eq!(ty(b"event: a\ndata: x\nevent: b\n\n").as_deref(), Some("b"));
        assert_eq!(
            ty(b"event: a\ndata: {\"event\":1}\n\n").as_deref(),
            Some("a")
        );
        assert_eq!(ty(b"event: a\nevent\n\n").as_deref(), Some(""));
        assert_eq!(ty(b"data: x\nevent: late\n\n").as_deref(), Some("late"));
        assert_eq!(ty(b"data: x\n\n"), None);
        // The name as bytes: the same field, and not UTF-8-checked.
        let name = |raw: &'static [u8]| {
            SseEvent::new(Bytes::from_static(raw))
                .event_name()
                .map(<[u8]>::to_vec)
        };
        assert_eq!(
            name(b"event: a\ndata: x\nevent: b\n\n").as_deref(),
            Some(&b"b"[..])
        );
        assert_eq!(
            name(b"event: \xff\ndata: x\n\n").as_deref(),
            Some(&b"\xff"[..])
        );
        assert_eq!(ty(b"event: \xff\ndata: x\n\n"), None);
        assert_eq!(name(b"data: x\n\n"), None);
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let stream: &[u8] = b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: l1\ndata: l2\n\n";
        let (whole, _) = decode_all(&[stream]);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[3].data().as_deref(), Some("l1\nl2"));
        for i in 0..stream.len() {
            for j in i..stream.len() {
                let (events, rest) = decode_all(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(events, whole, "split at {i},{j}");
                assert_eq!(rest, None);
            }
        }
    }

    #[test]
    fn oversized_events_pass_in_pieces() {
        let mut d = SseDecoder::new(64);
        let big = vec![b'x'; 1000];
        d.push(b"data: ");
        d.push(&big);
        let mut total = 0;
        while let Some(e) = d.next_event() {
            total += e.raw.len();
        }
        assert!(d.pending() <= 64);
        assert_eq!(total + d.pending(), 1006);
    }

    mod props {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        /// A valid event: field lines (or comments) each ended by LF, CRLF or CR, then a
        /// blank line with its own terminator.
        fn event() -> impl Strategy<Value = Vec<u8>> {
            let terminator = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
            let line = (
                prop_oneof![
                    Just("data: "),
                    Just("event: "),
                    Just("id: "),
                    Just(": "),
                    Just("data:")
                ],
                "[a-zA-Z0-9 {}\":,\\[\\]._-]{0,40}",
                terminator.clone(),
            );
            (vec(line, 1..5), terminator).prop_map(|(lines, end)| {
                let mut out = Vec::new();
                let mut last: &[u8] = b"";
                for (field, value, term) in lines {
                    out.extend_from_slice(field.as_bytes());
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(term);
                    last = term;
                }
                // CR then LF is one terminator, not a line and a blank line.
                let end = if last == b"\r" && end == b"\n" {
                    &b"\r\n"[..]
                } else {
                    end
                };
                out.extend_from_slice(end);
                out
            })
        }

        /// Splits `bytes` at the given cut points (taken modulo its length).
        fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut out = Vec::new();
            let mut from = 0;
            for p in points.into_iter().chain([bytes.len()]) {
                out.push(bytes[from..p].to_vec());
                from = p;
            }
            out
        }

        fn decode(decoder: &mut SseDecoder, chunks: &[Vec<u8>], max_held: usize) -> Vec<Bytes> {
            let mut out = Vec::new();
            for chunk in chunks {
                decoder.push(chunk);
                while let Some(e) = decoder.next_event() {
                    out.push(e.raw);
                }
                assert!(decoder.pending() <= max_held, "{} held", decoder.pending());
            }
            out.extend(decoder.finish());
            out
        }

        proptest! {
            #[test]
            fn any_split_of_a_valid_stream_gives_the_same_events_and_bytes(
                events in vec(event(), 0..12),
                cuts in vec(any::<usize>(), 0..10),
            ) {
                let stream: Vec<u8> = events.concat();
                let whole = decode(&mut SseDecoder::default(), std::slice::from_ref(&stream), usize::MAX);
                let parts = decode(&mut SseDecoder::default(), &split(&stream, &cuts), usize::MAX);
                prop_assert_eq!(&parts, &whole);
                prop_assert_eq!(parts.concat(), stream);
                // A CR-ended event may only be recognised once the next byte shows it is not
                // the start of a CRLF, so the count is at least the events before the last.
                prop_assert!(whole.len() + 1 >= events.len());
            }

            #[test]
            fn arbitrary_bytes_never_panic_and_stay_bounded(
                bytes in vec(any::<u8>(), 0..4096),
                cuts in vec(any::<usize>(), 0..16),
            ) {
                let max = 64;
                let chunks = split(&bytes, &cuts);
                let longest = chunks.iter().map(Vec::len).max().unwrap_or(0);
                let mut decoder = SseDecoder::new(max);
                let out = decode(&mut decoder, &chunks, max.max(longest));
                prop_assert_eq!(out.concat(), bytes);
                for e in &out {
                    let event = SseEvent::new(e.clone());
                    let _ = (event.event_type(), event.data());
                }
            }
        }
    }
}
