//! Calls to a provider: one pooled HTTP client, and the headers that go upstream.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::actor::{ACTOR_ID_HEADER, ACTOR_METADATA_PREFIX, Actor};
use crate::provider::{ProviderConfig, ProviderKind};
use crate::secret::mask;

/// Headers that describe one hop, not the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// How the upstream request was authenticated, for the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `centralized` (the bridge's key) or `byok` (the client's own), or `none`.
    pub kind: &'static str,
    /// A masked hint of the key used.
    pub hint: Option<String>,
}

/// Builds a pooled client for upstream calls, with this connect timeout. There is no
/// overall timeout: time to first byte and idle gaps are enforced by the relay, so a long
/// stream is never cut while it is still moving.
pub fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
}

/// The headers to send upstream: the client's, minus hop-by-hop, the bridge's own
/// `x-aibridge-*`, and (when the bridge must read the body) `accept-encoding`; with the
/// provider's key replacing the client's, or the client's own key when the provider has none.
pub fn upstream_headers(
    client: &HeaderMap,
    provider: &ProviderConfig,
    actor: &Actor,
    bridged: bool,
) -> (HeaderMap, Credential) {
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n.starts_with("x-aibridge-")
            || n == "x-api-key"
            || n == "authorization"
            || (bridged && n == "accept-encoding")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let credential = match &provider.api_key {
        Some(key) => {
            let header = match provider.kind {
                ProviderKind::Anthropic => ("x-api-key", key.expose().to_owned()),
                ProviderKind::OpenAi => ("authorization", format!("Bearer {}", key.expose())),
            };
            if let Ok(mut v) = HeaderValue::from_str(&header.1) {
                v.set_sensitive(true);
                out.insert(HeaderName::from_static(header.0), v);
            }
            Credential {
                kind: "centralized",
                hint: Some(key.hint()),
            }
        }
        None if !actor.client_key_is_virtual => {
            let mut hint = None;
            for name in ["x-api-key", "authorization"] {
                for value in client.get_all(name) {
                    let mut v = value.clone();
                    v.set_sensitive(true);
                    out.append(HeaderName::from_static(name), v);
                    if hint.is_none() {
                        let text = value.to_str().unwrap_or("");
                        hint = Some(mask(text.strip_prefix("Bearer ").unwrap_or(text)));
                    }
                }
            }
            Credential {
                kind: if hint.is_some() { "byok" } else { "none" },
                hint,
            }
        }
        None => Credential {
            kind: "none",
            hint: None,
        },
    };
    if provider.send_actor_headers {
        if let Ok(v) = HeaderValue::from_str(&actor.id) {
            out.insert(HeaderName::from_static(ACTOR_ID_HEADER), v);
        }
        for (k, v) in &actor.metadata {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(format!("{ACTOR_METADATA_PREFIX}{k}").as_bytes()),
                HeaderValue::from_str(v),
            ) {
                out.insert(name, value);
            }
        }
    }
    (out, credential)
}

/// Response headers to relay: the upstream's, minus hop-by-hop ones (and the length when
/// the body is re-framed).
pub fn client_headers(upstream: &HeaderMap, keep_length: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + 1);
    for (name, value) in upstream {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) && !(keep_length && n == "content-length") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}
