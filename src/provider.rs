//! Providers: where a route prefix sends its requests, and with which key.

use crate::secret::Secret;

/// The kinds of upstream the bridge speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI Chat Completions and Responses APIs.
    OpenAi,
}

impl ProviderKind {
    /// Parses a config value.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "anthropic" => Some(Self::Anthropic),
            "openai" => Some(Self::OpenAi),
            _ => None,
        }
    }

    /// The stable name used in config, records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
        }
    }

    /// The public API's base URL. OpenAI's includes `/v1` (as `OPENAI_BASE_URL` does);
    /// Anthropic's does not (as `ANTHROPIC_BASE_URL` does not).
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Anthropic => "https://api.anthropic.com",
            Self::OpenAi => "https://api.openai.com/v1",
        }
    }

    /// The part of a client path (after the provider prefix) that the base URL already holds.
    pub fn base_path_overlap(self) -> &'static str {
        match self {
            Self::Anthropic => "",
            Self::OpenAi => "/v1",
        }
    }
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Route prefix (`/<name>/…`) and the name recorded.
    pub name: String,
    /// Wire family.
    pub kind: ProviderKind,
    /// Base URL without a trailing slash.
    pub base_url: String,
    /// Centralized key; `None` means clients bring their own.
    pub api_key: Option<Secret>,
    /// Whether actor headers go upstream.
    pub send_actor_headers: bool,
    /// Retries, timeouts, circuit breaker and dumps.
    pub resilience: crate::resilience::Resilience,
    /// The outbound proxy of upstream calls; by default the proxy environment variables'.
    pub proxy: crate::upstream::Proxy,
}

impl ProviderConfig {
    /// The upstream URL for a client path below the provider prefix (e.g. `/v1/messages`),
    /// with the client's query string kept.
    pub fn upstream_url(&self, rest: &str, query: Option<&str>) -> String {
        let overlap = self.kind.base_path_overlap();
        let rest = if !overlap.is_empty()
            && (rest == overlap || rest.starts_with(&format!("{overlap}/")))
        {
            &rest[overlap.len()..]
        } else {
            rest
        };
        let mut url = String::with_capacity(self.base_url.len() + rest.len() + 16);
        url.push_str(&self.base_url);
        url.push_str(rest);
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ProviderKind, base: &str) -> ProviderConfig {
        ProviderConfig {
            name: kind.as_str().into(),
            kind,
            base_url: base.into(),
            api_key: None,
            send_actor_headers: false,
            resilience: Default::default(),
            proxy: Default::default(),
        }
    }

    #[test]
    fn urls_keep_base_path_and_query() {
        let a = provider(ProviderKind::Anthropic, "http://up:1");
        assert_eq!(
            a.upstream_url("/v1/messages", Some("beta=true")),
            "http://up:1/v1/messages?beta=true"
        );
        let o = provider(ProviderKind::OpenAi, "http://up:1/proxy/v1");
        assert_eq!(
            o.upstream_url("/v1/responses", None),
            "http://up:1/proxy/v1/responses"
        );
        assert_eq!(o.upstream_url("/v1", None), "http://up:1/proxy/v1");
        assert_eq!(
            o.upstream_url("/v1beta/x", None),
            "http://up:1/proxy/v1/v1beta/x"
        );
    }
}
