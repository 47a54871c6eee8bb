//! Per-provider resilience policy: retries with backoff, timeouts and the circuit breaker's
//! settings, plus the pure functions that decide whether and how long to wait before a retry.
//!
//! Retries happen only inside [`crate::intercept::Interception::send`], before any byte of
//! that upstream response reached the client, so a retried response is never half relayed.

pub mod config;

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderMap;

/// Retries, timeouts, breaker and dump settings of one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Resilience {
    /// Extra attempts after the first (0 disables retries).
    pub retries: u32,
    /// The first backoff; each retry doubles it, with jitter.
    pub backoff: Duration,
    /// The longest wait before a retry; an upstream asking for longer gets no retry.
    pub max_retry_wait: Duration,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Where request/response dumps go, if anywhere.
    pub dump_dir: Option<PathBuf>,
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            retries: 2,
            backoff: Duration::from_millis(500),
            max_retry_wait: Duration::from_secs(30),
            breaker: BreakerConfig::default(),
            timeouts: Timeouts::default(),
            dump_dir: None,
        }
    }
}

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit (0 disables the breaker).
    pub failures: u32,
    /// How long an open circuit rejects before letting one probe through.
    pub open_for: Duration,
    /// Upstream statuses that count as failures (transport errors and timeouts always do).
    pub trip_on: Vec<u16>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
            trip_on: vec![429, 503, 504, 529],
        }
    }
}

impl BreakerConfig {
    /// Whether an upstream status counts as a failure.
    pub fn trips_on(&self, status: u16) -> bool {
        self.trip_on.contains(&status)
    }
}

/// Upstream timeouts. Generous by default: a model that thinks for minutes before its first
/// token, or between events of a stream, must not be cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// From sending the request to the response headers.
    pub first_byte: Duration,
    /// The longest gap between two body chunks.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(600),
            idle: Duration::from_secs(300),
        }
    }
}

/// Statuses worth another attempt: rate limits, overload and gateway failures.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504 | 529)
}

/// The wait the upstream asked for: `retry-after-ms`, else `retry-after` in seconds or as
/// an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = text("retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Exponential backoff with jitter for retry number `retry` (0-based): a random wait in
/// `[d/2, d]` where `d = base · 2^retry`, capped at `max`.
pub fn backoff(base: Duration, retry: u32, max: Duration) -> Duration {
    let full = base.saturating_mul(1u32 << retry.min(16)).min(max);
    let half = full / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(retry);
    half + Duration::from_micros(hasher.finish() % spread)
}

/// How long to wait before retrying a response with this status and headers, or `None`
/// when it should go to the client as it is.
pub fn wait_before_retry(
    policy: &Resilience,
    status: u16,
    headers: &HeaderMap,
    retry: u32,
) -> Option<Duration> {
    if retry >= policy.retries || !retryable_status(status) {
        return None;
    }
    match retry_after(headers) {
        Some(wait) if wait > policy.max_retry_wait => None,
        Some(wait) => Some(wait),
        None => Some(backoff(policy.backoff, retry, policy.max_retry_wait)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
    }

    #[test]
    fn backoff_doubles_within_jitter_and_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for retry in 0..6 {
            let full = (base * (1 << retry)).min(max);
            let got = backoff(base, retry, max);
            assert!(got >= full / 2 && got <= full, "{retry}: {got:?}");
        }
    }

    #[test]
    fn retry_decisions() {
        let policy = Resilience::default();
        let none = HeaderMap::new();
        assert!(wait_before_retry(&policy, 503, &none, 0).is_some());
        assert!(wait_before_retry(&policy, 400, &none, 0).is_none());
        assert!(wait_before_retry(&policy, 503, &none, 2).is_none());
        let long = headers(&[("retry-after", "3600")]);
        assert!(wait_before_retry(&policy, 429, &long, 0).is_none());
        let off = Resilience {
            retries: 0,
            ..Resilience::default()
        };
        assert!(wait_before_retry(&off, 503, &none, 0).is_none());
    }
}
