//! Streaming responses: SSE events relayed as the exact bytes received, each flushed at once,
//! observed on the way. Pull-based: the client's reads drive the upstream reads, so a slow
//! client applies backpressure instead of growing a buffer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::Stream;
use http::Response;

use super::Interception;
use crate::api::{ErrorKind, EventAction, Observer};
use crate::record::Outcome;
use crate::sse::SseDecoder;
use crate::upstream::client_headers;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Starts relaying an upstream SSE response to the client.
pub fn relay(ic: Interception, resp: reqwest::Response) -> Response<Body> {
    let status = resp.status();
    let headers = client_headers(resp.headers(), false);
    let id = ic.id;
    let observer = ic.observer();
    let relay = Relay {
        upstream: Box::pin(resp.bytes_stream()),
        decoder: SseDecoder::default(),
        observer,
        pending: VecDeque::new(),
        ic: Some(ic),
    };
    let mut out = Response::new(Body::from_stream(relay));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    crate::bridge::tag(&mut out, id);
    out
}

struct Relay {
    upstream: ByteStream,
    decoder: SseDecoder,
    observer: Box<dyn Observer>,
    pending: VecDeque<Bytes>,
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
}

impl Stream for Relay {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.ic.is_none() {
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    this.decoder.push(&chunk);
                    while let Some(event) = this.decoder.next_event() {
                        if this.observer.on_event(&event) == EventAction::Forward {
                            this.pending.push_back(event.raw);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("upstream stream broke off: {}", e.without_url());
                    if let Some(rest) = this.decoder.finish() {
                        this.pending.push_back(rest);
                    }
                    let api = this.ic.as_ref().map(Interception::api);
                    if let Some(api) = api {
                        this.pending
                            .push_back(api.stream_error_event(ErrorKind::Upstream, &message));
                    }
                    this.finish(Outcome::UpstreamUnavailable, Some(message));
                }
                Poll::Ready(None) => {
                    if let Some(rest) = this.decoder.finish() {
                        this.pending.push_back(rest);
                    }
                    this.finish(Outcome::Completed, None);
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client went away mid-stream: keep what was observed, end the interception.
        self.finish(Outcome::ClientDisconnected, None);
    }
}
