//! Blocking responses, and upstream error responses of either kind: read whole (capped),
//! observe, relay unchanged.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::Response;
use http_body::Body as _;

use super::Interception;
use crate::api::ErrorKind;
use crate::record::Outcome;
use crate::upstream::{UpstreamResponse, client_headers, error_chain};

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is larger than the cap.
    #[error("upstream response exceeds {0} bytes")]
    TooLarge(usize),
    /// The upstream broke off.
    #[error("upstream response broke off: {0}")]
    Broken(String),
    /// The upstream sent nothing for too long.
    #[error("upstream response stalled: no data for {0:?}")]
    Idle(Duration),
}

/// Reads a response body, refusing to buffer more than `cap` bytes or to wait longer
/// than `idle` for the next chunk.
pub async fn read_capped(
    resp: &mut UpstreamResponse,
    cap: usize,
    idle: Duration,
) -> Result<Bytes, ReadError> {
    let body = resp.body_mut();
    let mut buf = BytesMut::new();
    loop {
        let Ok(next) = tokio::time::timeout(idle, body.chunk()).await else {
            return Err(ReadError::Idle(idle));
        };
        match next {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > cap {
                    return Err(ReadError::TooLarge(cap));
                }
                if buf.is_empty() && body.size_hint().exact().is_none() {
                    buf.reserve(chunk.len());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(ReadError::Broken(error_chain(&e))),
        }
    }
}

/// Reads a whole upstream body (capped, dumped when dumping is on). On failure the
/// interception ends with `outcome` and the client's error response comes back instead.
pub async fn read_body(
    ic: &mut Interception,
    resp: &mut UpstreamResponse,
    cap: usize,
    outcome: Outcome,
) -> Result<Bytes, Response<Body>> {
    match read_capped(resp, cap, ic.idle_timeout()).await {
        Ok(body) => {
            ic.dump_body(&body);
            Ok(body)
        }
        Err(e) => {
            let message = e.to_string();
            ic.end(outcome, Some(message.clone()));
            Err(crate::bridge::error_response(
                ic.provider().kind,
                ErrorKind::Upstream,
                &message,
                Some(ic.id),
            ))
        }
    }
}

/// Relays a successful blocking response, recording what it says.
pub async fn relay(mut ic: Interception, mut resp: UpstreamResponse, cap: usize) -> Response<Body> {
    let status = resp.status();
    let body = match read_body(&mut ic, &mut resp, cap, Outcome::UpstreamUnavailable).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut observer = ic.observer();
    observer.on_body(&body);
    let obs = observer.take();
    let outcome = if obs.error.is_some() {
        Outcome::UpstreamError
    } else {
        Outcome::Completed
    };
    ic.observed(obs);
    ic.end(outcome, None);
    respond(status, resp.headers(), body, &ic)
}

/// Relays an upstream error response (status and body unchanged).
pub async fn relay_error(
    mut ic: Interception,
    mut resp: UpstreamResponse,
    cap: usize,
) -> Response<Body> {
    let status = resp.status();
    let body = match read_body(&mut ic, &mut resp, cap, Outcome::UpstreamError).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let detail = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    ic.end(Outcome::UpstreamError, Some(detail));
    respond(status, resp.headers(), body, &ic)
}

fn respond(
    status: http::StatusCode,
    upstream: &http::HeaderMap,
    body: Bytes,
    ic: &Interception,
) -> Response<Body> {
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    *out.headers_mut() = client_headers(upstream, true);
    crate::bridge::tag(&mut out, ic.id);
    out
}
