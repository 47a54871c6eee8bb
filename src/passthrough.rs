//! Passthrough: every non-bridged path under a provider prefix goes upstream with method,
//! query and body unchanged, and the response comes back as a stream of its own bytes.

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

use crate::actor::Actor;
use crate::api::ErrorKind;
use crate::bridge::{BridgeState, error_response};
use crate::dump::Dump;
use crate::metrics::PassthroughLabels;
use crate::provider::ProviderConfig;
use crate::record::new_id;
use crate::upstream::{client_headers, error_chain, parse_uri, request, upstream_headers};

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
    let resp = match uri {
        Ok(uri) => {
            let req = request(parts.method.clone(), uri, headers, body);
            state
                .client(provider)
                .request(req)
                .await
                .map_err(|e| error_chain(&e))
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
