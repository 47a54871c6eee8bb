//! Streaming responses: SSE events relayed as the exact bytes received, observed on the
//! way, and flushed as soon as the upstream has nothing more ready: events that arrived
//! together go out together, none waits for a later one. Pull-based: the client's reads
//! drive the upstream reads, so a slow client applies backpressure instead of growing a
//! buffer (and is logged by the slow-client watchdog, `watchdog.rs`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::Response;
use http_body::Body as _;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::watchdog::ClientWatch;
use super::{Interception, SHUTDOWN_CANCELLED};
use crate::api::{ErrorKind, EventAction, Observer};
use crate::record::Outcome;
use crate::sse::SseDecoder;
use crate::upstream::{UpstreamBody, UpstreamResponse, client_headers, error_chain};

/// The most a relay gathers from what the upstream has ready before handing it over.
const GATHER_LIMIT: usize = 64 * 1024;

/// Starts relaying an upstream SSE response to the client.
pub fn relay(ic: Interception, resp: UpstreamResponse) -> Response<Body> {
    let (parts, upstream) = resp.into_parts();
    let status = parts.status;
    let headers = client_headers(&parts.headers, false);
    let id = ic.id;
    let observer = ic.observer();
    let idle = ic.idle_timeout();
    let relay = Relay {
        upstream,
        decoder: SseDecoder::default(),
        observer,
        pending: VecDeque::new(),
        pending_len: 0,
        idle,
        idle_timer: Box::pin(tokio::time::sleep(idle)),
        waiting_upstream: false,
        cancelled: Box::pin(ic.cancelled()),
        watch: ClientWatch::start(&ic),
        ic: Some(ic),
    };
    let mut out = Response::new(Body::from_stream(relay));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    crate::bridge::tag(&mut out, id);
    out
}

struct Relay {
    upstream: UpstreamBody,
    decoder: SseDecoder,
    observer: Box<dyn Observer>,
    /// Whole events (or the end of the stream) read and not yet handed over.
    pending: VecDeque<Bytes>,
    /// Their bytes.
    pending_len: usize,
    /// The longest the upstream may stay silent.
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    /// Whether `idle_timer` runs: it starts when the relay begins waiting on the
    /// upstream, not while the client is slow to take what was read.
    waiting_upstream: bool,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    watch: ClientWatch,
    /// `None` once the interception has ended.
    ic: Option<Interception>,
}

impl Relay {
    fn finish(&mut self, outcome: Outcome, detail: Option<String>) {
        if let Some(mut ic) = self.ic.take() {
            let obs = self.observer.take();
            let outcome = match (&obs.error, outcome) {
                (Some(_), Outcome::Completed) => Outcome::UpstreamError,
                (_, o) => o,
            };
            let detail = detail.or_else(|| obs.error.clone());
            ic.observed(obs);
            ic.end(outcome, detail);
        }
    }

    /// Ends the stream with an error event in the client's API after what was relayed.
    fn fail(&mut self, outcome: Outcome, message: String) {
        if let Some(rest) = self.decoder.finish() {
            self.queue(rest);
        }
        let api = self.ic.as_ref().map(Interception::api);
        if let Some(api) = api {
            self.queue(api.stream_error_event(ErrorKind::Upstream, &message));
        }
        self.finish(outcome, Some(message));
    }

    fn queue(&mut self, bytes: Bytes) {
        self.pending_len += bytes.len();
        self.pending.push_back(bytes);
    }

    /// What was read and not yet handed over, as one chunk: the events that arrived
    /// together go to the client in one write.
    fn take_pending(&mut self) -> Option<Bytes> {
        let bytes = match self.pending.len() {
            0 => return None,
            1 => self.pending.pop_front()?,
            _ => {
                let mut joined = BytesMut::with_capacity(self.pending_len);
                for chunk in self.pending.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                joined.freeze()
            }
        };
        self.pending_len = 0;
        self.watch.handed(bytes.len(), self.decoder.pending(), 0);
        Some(bytes)
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.watch.asked();
        loop {
            if this.ic.is_none() {
                return Poll::Ready(this.take_pending().map(Ok));
            }
            // Checked before the upstream, so a stream that never pauses is cancelled too.
            if this.ic.as_ref().is_some_and(Interception::shutting_down) {
                this.fail(Outcome::Failed, SHUTDOWN_CANCELLED.to_owned());
                continue;
            }
            if this.pending_len >= GATHER_LIMIT
                && let Some(bytes) = this.take_pending()
            {
                return Poll::Ready(Some(Ok(bytes)));
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Pending => {
                    // Nothing more has arrived: what was read goes out now.
                    if let Some(bytes) = this.take_pending() {
                        return Poll::Ready(Some(Ok(bytes)));
                    }
                    // About to sleep: wake on cancellation too.
                    if this.cancelled.as_mut().poll(cx).is_ready() {
                        this.fail(Outcome::Failed, SHUTDOWN_CANCELLED.to_owned());
                        continue;
                    }
                    if !this.waiting_upstream {
                        this.waiting_upstream = true;
                        let deadline = tokio::time::Instant::now() + this.idle;
                        this.idle_timer.as_mut().reset(deadline);
                    }
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        let message =
                            format!("upstream stream stalled: no data for {:?}", this.idle);
                        this.fail(Outcome::UpstreamUnavailable, message);
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(frame))) => {
                    this.waiting_upstream = false;
                    // Trailers carry nothing to relay.
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    if let Some(ic) = this.ic.as_mut() {
                        ic.dump_body(&chunk);
                    }
                    this.decoder.push(&chunk);
                    while let Some(event) = this.decoder.next_event() {
                        if this.observer.on_event(&event) == EventAction::Forward {
                            this.queue(event.raw);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("upstream stream broke off: {}", error_chain(&e));
                    this.fail(Outcome::UpstreamUnavailable, message);
                }
                Poll::Ready(None) => {
                    if let Some(rest) = this.decoder.finish() {
                        this.queue(rest);
                    }
                    this.finish(Outcome::Completed, None);
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client went away: keep what was observed, end the interception. A client that
        // had the API's last event (Codex, for one, hangs up on `response.completed` without
        // waiting for the body's end) got the whole answer: that is a completed request.
        let outcome = if self.observer.finished() && self.pending.is_empty() {
            Outcome::Completed
        } else {
            Outcome::ClientDisconnected
        };
        self.finish(outcome, None);
    }
}
