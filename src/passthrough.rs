//! Passthrough: every non-bridged path under a provider prefix goes upstream with method,
//! query and body unchanged, and the response comes back as a stream of its own bytes.

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;

use crate::actor::Actor;
use crate::api::ErrorKind;
use crate::bridge::{BridgeState, error_response};
use crate::dump::Dump;
use crate::metrics::PassthroughLabels;
use crate::provider::ProviderConfig;
use crate::record::new_id;
use crate::upstream::{client_headers, upstream_headers};

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
    let resp = state
        .client(provider)
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(resp) => {
            count(resp.status().as_u16());
            let keep_length = resp.headers().contains_key(http::header::CONTENT_LENGTH);
            let mut out = Response::new(Body::empty());
            *out.status_mut() = resp.status();
            *out.headers_mut() = client_headers(resp.headers(), keep_length);
            *out.body_mut() = match dump.take() {
                Some(mut dump) => {
                    dump.response(resp.status().as_u16(), resp.headers());
                    Body::from_stream(resp.bytes_stream().map(move |chunk| {
                        if let Ok(bytes) = &chunk {
                            dump.body(bytes);
                        }
                        chunk
                    }))
                }
                None => Body::from_stream(resp.bytes_stream()),
            };
            out
        }
        Err(e) => {
            count(0);
            let message = format!("upstream unreachable: {}", e.without_url());
            if let Some(dump) = &mut dump {
                dump.note(&message);
            }
            error_response(provider.kind, ErrorKind::Upstream, &message, None)
        }
    }
}
