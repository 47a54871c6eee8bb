//! Passthrough: every non-bridged path under a provider prefix goes upstream with method,
//! query and body unchanged, and the response comes back as a stream of its own bytes.
//!
//! The provider's timeouts hold here as on bridged routes: no response head within
//! `first_byte` is a 502 in the provider's error format, and a body that sends nothing for
//! `idle` is cut (the head has gone out, so the client sees the response end early).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::actor::Actor;
use crate::api::ErrorKind;
use crate::bridge::{BridgeState, error_response};
use crate::dump::Dump;
use crate::metrics::PassthroughLabels;
use crate::provider::ProviderConfig;
use crate::record::new_id;
use crate::upstream::{
    BodyError, UpstreamBody, client_headers, error_chain, parse_uri, request, upstream_headers,
};

/// Forwards one request and streams the answer back.
pub async fn forward(
    state: &BridgeState,
    provider: &ProviderConfig,
    actor: &Actor,
    parts: http::request::Parts,
    rest: &str,
    body: Bytes,
) -> Response<Body> {
    let (headers, _) = upstream_headers(&parts.headers, provider, actor, false);
    let url = provider.upstream_url(rest, parts.uri.query());
    let uri = parse_uri(&url);
    let count = |status: u16| {
        state
            .metrics
            .passthrough
            .get_or_create(&PassthroughLabels {
                provider: provider.name.clone(),
                method: parts.method.as_str().to_owned(),
                status: status.to_string(),
            })
            .inc();
    };
    let mut dump = provider.resilience.dump_dir.as_deref().map(|dir| {
        let mut dump = Dump::open(dir, &new_id().to_string(), &provider.name, "passthrough");
        dump.request(parts.method.as_str(), &url, &headers, &body);
        dump
    });
    let timeouts = provider.resilience.timeouts;
    let resp = match uri {
        Ok(uri) => {
            let req = request(parts.method.clone(), uri, headers, body);
            let sent = state.client(provider).request(req);
            match tokio::time::timeout(timeouts.first_byte, sent).await {
                Ok(resp) => resp.map_err(|e| error_chain(&e)),
                Err(_) => Err(format!(
                    "upstream sent no response within {:?}",
                    timeouts.first_byte
                )),
            }
        }
        Err(e) => Err(format!("invalid upstream URL: {e}")),
    };
    match resp {
        Ok(resp) => {
            let (head, upstream) = resp.into_parts();
            count(head.status.as_u16());
            let keep_length = head.headers.contains_key(http::header::CONTENT_LENGTH);
            let mut out = Response::new(Body::empty());
            *out.status_mut() = head.status;
            *out.headers_mut() = client_headers(&head.headers, keep_length);
            let upstream = IdleLimited::new(upstream, timeouts.idle);
            *out.body_mut() = match dump.take() {
                Some(mut dump) => {
                    dump.response(head.status.as_u16(), &head.headers);
                    Body::new(upstream.map_frame(move |frame| {
                        if let Some(bytes) = frame.data_ref() {
                            dump.body(bytes);
                        }
                        frame
                    }))
                }
                None => Body::new(upstream),
            };
            out
        }
        Err(e) => {
            count(0);
            let message = format!("upstream unreachable: {e}");
            if let Some(dump) = &mut dump {
                dump.note(&message);
            }
            error_response(provider.kind, ErrorKind::Upstream, &message, None)
        }
    }
}

/// Why a passed-through body ended early.
#[derive(Debug, thiserror::Error)]
enum PassthroughBodyError {
    #[error(transparent)]
    Upstream(#[from] BodyError),
    #[error("upstream sent nothing for {0:?}")]
    Idle(Duration),
}

/// An upstream body that fails once no frame has come for `idle`.
struct IdleLimited {
    inner: UpstreamBody,
    idle: Duration,
    /// Due `idle` after the last frame (or the start).
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: bool,
}

impl IdleLimited {
    fn new(inner: UpstreamBody, idle: Duration) -> IdleLimited {
        IdleLimited {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            timed_out: false,
        }
    }
}

impl http_body::Body for IdleLimited {
    type Data = Bytes;
    type Error = PassthroughBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, PassthroughBodyError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = tokio::time::Instant::now() + this.idle;
            this.deadline.as_mut().reset(next);
            return Poll::Ready(frame.map(|f| f.map_err(PassthroughBodyError::from)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(PassthroughBodyError::Idle(this.idle))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
