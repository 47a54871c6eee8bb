//! The response body: a queue of chunks, each sent after its delay, optionally ending in an abort.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Why a body stopped early; hyper aborts the connection when a body yields it.
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock upstream aborted the response body")
    }
}

impl std::error::Error for Aborted {}

/// A pull-based body: no task and no channel per response, so thousands of slow streams
/// cost only their chunk queues and one timer each.
pub struct ChunkBody {
    chunks: VecDeque<(Duration, Bytes)>,
    /// The timer for the front chunk's delay, once it has been armed.
    sleep: Option<Pin<Box<Sleep>>>,
    abort_at_end: bool,
    /// The abort waits one poll so hyper flushes the chunks written before it.
    abort_armed: bool,
    exact_len: Option<u64>,
}

impl ChunkBody {
    /// A body sent at once, with a known length.
    pub fn full(bytes: Bytes) -> ChunkBody {
        let len = bytes.len() as u64;
        let mut chunks = VecDeque::with_capacity(1);
        if !bytes.is_empty() {
            chunks.push_back((Duration::ZERO, bytes));
        }
        ChunkBody {
            chunks,
            sleep: None,
            abort_at_end: false,
            abort_armed: false,
            exact_len: Some(len),
        }
    }

    /// A chunked body; `abort_at_end` makes it fail after the last chunk instead of ending.
    pub fn chunks(chunks: impl Into<VecDeque<(Duration, Bytes)>>, abort_at_end: bool) -> ChunkBody {
        ChunkBody {
            chunks: chunks.into(),
            sleep: None,
            abort_at_end,
            abort_armed: false,
            exact_len: None,
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = &mut *self;
        let Some((delay, _)) = this.chunks.front() else {
            if this.abort_at_end && !this.abort_armed {
                this.abort_armed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(this.abort_at_end.then_some(Err(Aborted)));
        };
        if !delay.is_zero() {
            let delay = *delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        match this.chunks.pop_front() {
            Some((_, bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && !self.abort_at_end
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}
