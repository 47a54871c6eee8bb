//! Actors: who a bridged request belongs to, and the ways to resolve one.
//!
//! In order: a virtual key presented as `x-api-key` or `Authorization: Bearer`; the
//! trusted `x-aibridge-actor-id` header of a platform in front (sidecar mode, only when
//! enabled); the single user `local` when no authentication is configured (only allowed on
//! loopback, checked by the config).

use std::collections::BTreeMap;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

/// The header carrying the actor id in sidecar mode.
pub const ACTOR_ID_HEADER: &str = "x-aibridge-actor-id";
/// The prefix of headers carrying actor metadata in sidecar mode.
pub const ACTOR_METADATA_PREFIX: &str = "x-aibridge-actor-metadata-";

/// The owner of a bridged request. The bridge reads it from request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Stable id (recorded as `initiator_id`).
    pub id: String,
    /// Free-form metadata recorded with each interception.
    pub metadata: BTreeMap<String, String>,
    /// The client's key was a virtual key for the bridge, not a provider key: never
    /// forward it upstream.
    pub client_key_is_virtual: bool,
}

impl Actor {
    /// An actor with no metadata.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            metadata: BTreeMap::new(),
            client_key_is_virtual: false,
        }
    }
}

/// Why no actor could be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential at all.
    #[error("missing credentials: send a virtual key as x-api-key or Authorization: Bearer")]
    Missing,
    /// A credential that matches no virtual key.
    #[error("invalid API key")]
    InvalidKey,
}

/// Resolves actors from request headers according to the auth config.
#[derive(Debug, Clone)]
pub struct Authenticator {
    auth: AuthConfig,
}

impl Authenticator {
    /// An authenticator for this config.
    pub fn new(auth: AuthConfig) -> Self {
        Self { auth }
    }

    /// The actor for a request's headers.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<Actor, AuthError> {
        let presented = client_keys(headers);
        if !self.auth.keys.is_empty() {
            for key in &presented {
                let hash = hash_key(key);
                // Check every key so timing does not reveal which one matched.
                let mut found = None;
                for vk in &self.auth.keys {
                    if bool::from(vk.sha256.ct_eq(&hash)) && found.is_none() {
                        found = Some(vk);
                    }
                }
                if let Some(vk) = found {
                    return Ok(Actor {
                        id: vk.actor_id.clone(),
                        metadata: vk.metadata.clone(),
                        client_key_is_virtual: true,
                    });
                }
            }
        }
        if self.auth.trusted_headers
            && let Some(id) = header_str(headers, ACTOR_ID_HEADER).filter(|v| !v.is_empty())
        {
            let metadata = headers
                .iter()
                .filter_map(|(name, value)| {
                    let key = name.as_str().strip_prefix(ACTOR_METADATA_PREFIX)?;
                    Some((key.to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            return Ok(Actor {
                id: id.to_owned(),
                metadata,
                client_key_is_virtual: false,
            });
        }
        if !self.auth.is_configured() {
            return Ok(Actor::new("local"));
        }
        if presented.is_empty() {
            Err(AuthError::Missing)
        } else {
            Err(AuthError::InvalidKey)
        }
    }
}

/// SHA-256 of a key, as stored for virtual keys.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The keys a client presented: `x-api-key` and the `Authorization: Bearer` token (Claude
/// Code can send both).
pub fn client_keys(headers: &HeaderMap) -> Vec<&str> {
    let mut keys = Vec::with_capacity(2);
    if let Some(k) = header_str(headers, "x-api-key")
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        keys.push(k);
    }
    if let Some(k) = header_str(headers, "authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        && !keys.contains(&k)
    {
        keys.push(k);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VirtualKey;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn keyed() -> Authenticator {
        Authenticator::new(AuthConfig {
            trusted_headers: true,
            keys: vec![VirtualKey {
                actor_id: "alice".into(),
                sha256: hash_key("vk-alice"),
                metadata: [("team".to_owned(), "core".to_owned())].into(),
            }],
        })
    }

    #[test]
    fn single_user_when_unconfigured() {
        let a = Authenticator::new(AuthConfig::default());
        assert_eq!(a.resolve(&HeaderMap::new()).unwrap().id, "local");
    }

    #[test]
    fn virtual_key_in_either_header() {
        let a = keyed();
        let x = a.resolve(&headers(&[("x-api-key", "vk-alice")])).unwrap();
        assert_eq!(x.id, "alice");
        assert!(x.client_key_is_virtual);
        let b = a.resolve(&headers(&[
            ("authorization", "Bearer vk-alice"),
            ("x-api-key", "other"),
        ]));
        assert_eq!(b.unwrap().metadata["team"], "core");
    }

    #[test]
    fn trusted_header_and_rejections() {
        let a = keyed();
        let t = a
            .resolve(&headers(&[
                ("x-aibridge-actor-id", "bob"),
                ("x-aibridge-actor-metadata-email", "b@x"),
            ]))
            .unwrap();
        assert_eq!(t.id, "bob");
        assert_eq!(t.metadata["email"], "b@x");
        assert!(!t.client_key_is_virtual);
        assert_eq!(a.resolve(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(
            a.resolve(&headers(&[("x-api-key", "nope")])),
            Err(AuthError::InvalidKey)
        );
    }
}
