//! Writes SSE events into one buffer, cutting one shared-allocation chunk per event.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// An SSE transcript under construction: one chunk per event, deltas carry the slow-mode delay.
pub(crate) struct SseOut {
    buf: BytesMut,
    events: Vec<(Duration, Bytes)>,
    delta_delay: Duration,
}

impl SseOut {
    pub(crate) fn new(delta_delay: Duration) -> SseOut {
        SseOut {
            buf: BytesMut::with_capacity(4096),
            events: Vec::with_capacity(16),
            delta_delay,
        }
    }

    /// `event: NAME` + `data: JSON`, sent without delay.
    pub(crate) fn event(&mut self, name: &str, data: &impl Serialize) {
        self.named(name, data, Duration::ZERO);
    }

    /// `event: NAME` + `data: JSON`, sent after the per-delta delay.
    pub(crate) fn delta(&mut self, name: &str, data: &impl Serialize) {
        self.named(name, data, self.delta_delay);
    }

    /// A `data:`-only event (Chat Completions), optionally after the per-delta delay.
    pub(crate) fn data(&mut self, data: &impl Serialize, is_delta: bool) {
        self.buf.put_slice(b"data: ");
        self.json(data);
        self.buf.put_slice(b"\n\n");
        self.cut(if is_delta {
            self.delta_delay
        } else {
            Duration::ZERO
        });
    }

    /// Literal bytes as one event (e.g. `data: [DONE]\n\n`).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
        self.cut(Duration::ZERO);
    }

    pub(crate) fn finish(self) -> Vec<(Duration, Bytes)> {
        self.events
    }

    fn named(&mut self, name: &str, data: &impl Serialize, delay: Duration) {
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b"\ndata: ");
        self.json(data);
        self.buf.put_slice(b"\n\n");
        self.cut(delay);
    }

    fn json(&mut self, data: &impl Serialize) {
        // Serializing plain JSON values into memory cannot fail.
        let _ = serde_json::to_writer((&mut self.buf).writer(), data);
    }

    fn cut(&mut self, delay: Duration) {
        let event = self.buf.split().freeze();
        self.events.push((delay, event));
    }
}
