//! The resilience part of a `[[providers]]` entry as written, and its validation.

use std::path::PathBuf;

use serde::Deserialize;

use super::{BreakerConfig, Resilience, Timeouts};
use crate::config::parse_duration;

/// `[providers.breaker]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBreaker {
    /// Consecutive failures that open the circuit (default 5; 0 disables it).
    pub failures: Option<u32>,
    /// How long the circuit stays open before a probe (default `30s`).
    pub open_for: Option<String>,
    /// Statuses that count as failures (default `[429, 503, 504, 529]`).
    pub trip_on: Option<Vec<u16>>,
}

/// `[providers.timeouts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTimeouts {
    /// Connect timeout (default `10s`).
    pub connect: Option<String>,
    /// Time to the response headers (default `600s`).
    pub first_byte: Option<String>,
    /// Longest gap between body chunks (default `300s`).
    pub idle: Option<String>,
}

/// The resilience fields of one provider as written.
#[derive(Debug, Default)]
pub struct RawResilience<'a> {
    /// `retries`.
    pub retries: Option<u32>,
    /// `retry_backoff`.
    pub retry_backoff: Option<&'a str>,
    /// `retry_max_wait`.
    pub retry_max_wait: Option<&'a str>,
    /// `[providers.breaker]`.
    pub breaker: Option<&'a RawBreaker>,
    /// `[providers.timeouts]`.
    pub timeouts: Option<&'a RawTimeouts>,
    /// `dump_dir`.
    pub dump_dir: Option<&'a str>,
}

/// Validates the fields; an error is `(field path below the provider, message)`.
pub fn validate(
    raw: &RawResilience<'_>,
    env_dump_dir: Option<String>,
) -> Result<Resilience, (String, String)> {
    let d = Resilience::default();
    let duration = |field: &str, text: Option<&str>, default| match text {
        Some(text) => match parse_duration(text) {
            Ok(v) if v.is_zero() => Err((field.to_owned(), "must be more than zero".to_owned())),
            Ok(v) => Ok(v),
            Err(m) => Err((field.to_owned(), m)),
        },
        None => Ok(default),
    };
    let breaker = raw.breaker.map_or(Ok(d.breaker.clone()), |b| {
        Ok::<_, (String, String)>(BreakerConfig {
            failures: b.failures.unwrap_or(d.breaker.failures),
            open_for: duration(
                "breaker.open_for",
                b.open_for.as_deref(),
                d.breaker.open_for,
            )?,
            trip_on: b.trip_on.clone().unwrap_or(d.breaker.trip_on.clone()),
        })
    })?;
    let timeouts = raw.timeouts.map_or(Ok(d.timeouts), |t| {
        Ok::<_, (String, String)>(Timeouts {
            connect: duration("timeouts.connect", t.connect.as_deref(), d.timeouts.connect)?,
            first_byte: duration(
                "timeouts.first_byte",
                t.first_byte.as_deref(),
                d.timeouts.first_byte,
            )?,
            idle: duration("timeouts.idle", t.idle.as_deref(), d.timeouts.idle)?,
        })
    })?;
    Ok(Resilience {
        retries: raw.retries.unwrap_or(d.retries),
        backoff: duration("retry_backoff", raw.retry_backoff, d.backoff)?,
        max_retry_wait: duration("retry_max_wait", raw.retry_max_wait, d.max_retry_wait)?,
        breaker,
        timeouts,
        dump_dir: raw
            .dump_dir
            .map(str::to_owned)
            .or(env_dump_dir)
            .map(PathBuf::from),
    })
}
