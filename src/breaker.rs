//! Circuit breakers, one per provider, endpoint and model: after `failures` consecutive
//! failed upstream attempts the circuit opens and requests are refused at once (503 with
//! `Retry-After`) without calling the upstream; after `open_for` one probe goes through —
//! its success closes the circuit, its failure opens it again.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::FastHashMap;
use crate::metrics::BreakerLabels;
use crate::resilience::BreakerConfig;

/// What the breaker says about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` when this attempt decides whether a half-open circuit closes.
    Allowed {
        /// The attempt is the half-open probe.
        probe: bool,
    },
    /// The circuit is open: do not call the upstream, retry after this long.
    Rejected {
        /// Time until the next probe may go through.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

impl State {
    fn gauge(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

/// The breaker metric families (`aibridge_circuit_breaker_*`).
#[derive(Debug, Clone, Default)]
pub struct BreakerMetrics {
    /// `circuit_breaker_state`: 0 closed, 1 open, 2 half-open.
    pub state: Family<BreakerLabels, Gauge>,
    /// `circuit_breaker_trips_total`: times a circuit opened.
    pub trips: Family<BreakerLabels, Counter>,
    /// `circuit_breaker_rejects_total`: requests refused while open.
    pub rejects: Family<BreakerLabels, Counter>,
}

/// Every circuit of a bridge.
#[derive(Debug, Default)]
pub struct Breakers {
    circuits: Mutex<FastHashMap<BreakerLabels, State>>,
    metrics: BreakerMetrics,
}

impl Breakers {
    /// Breakers reporting into these metric families.
    pub fn new(metrics: BreakerMetrics) -> Breakers {
        Breakers {
            circuits: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FastHashMap<BreakerLabels, State>> {
        self.circuits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks whether an attempt may go upstream now.
    pub fn admit(&self, key: &BreakerLabels, config: &BreakerConfig) -> Admission {
        if config.failures == 0 {
            return Admission::Allowed { probe: false };
        }
        let now = Instant::now();
        let mut circuits = self.lock();
        let Some(state) = circuits.get_mut(key) else {
            return Admission::Allowed { probe: false };
        };
        let admission = match *state {
            // The common case: nothing changes, so the gauge (set on every change) is right.
            State::Closed { .. } => return Admission::Allowed { probe: false },
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { probe_since: now };
                Admission::Allowed { probe: true }
            }
            State::Open { until } => Admission::Rejected {
                retry_after: until - now,
            },
            // A probe that never reported (its request was dropped) must not block forever.
            State::HalfOpen { probe_since } if now - probe_since >= config.open_for => {
                *state = State::HalfOpen { probe_since: now };
                Admission::Allowed { probe: true }
            }
            State::HalfOpen { probe_since } => Admission::Rejected {
                retry_after: config.open_for.saturating_sub(now - probe_since),
            },
        };
        let gauge = state.gauge();
        drop(circuits);
        self.metrics.state.get_or_create(key).set(gauge);
        if matches!(admission, Admission::Rejected { .. }) {
            self.metrics.rejects.get_or_create(key).inc();
        }
        admission
    }

    /// Whether the next attempt would be refused (so a retry is pointless).
    pub fn is_open(&self, key: &BreakerLabels) -> bool {
        matches!(
            self.lock().get(key),
            Some(State::Open { until }) if Instant::now() < *until
        )
    }

    /// Reports how an admitted attempt went.
    pub fn report(&self, key: &BreakerLabels, config: &BreakerConfig, failed: bool) {
        if config.failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut circuits = self.lock();
        // The common case: a success on a closed circuit changes nothing (and clones no key).
        if !failed && matches!(circuits.get(key), Some(State::Closed { failures: 0 })) {
            return;
        }
        let state = circuits
            .entry(key.clone())
            .or_insert(State::Closed { failures: 0 });
        let mut tripped = false;
        *state = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 >= config.failures => {
                tripped = true;
                State::Open {
                    until: now + config.open_for,
                }
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen { .. }, true) => {
                tripped = true;
                State::Open {
                    until: now + config.open_for,
                }
            }
            // Attempts admitted before the circuit opened may still fail: it stays open.
            (open @ State::Open { .. }, true) => open,
        };
        let gauge = state.gauge();
        drop(circuits);
        self.metrics.state.get_or_create(key).set(gauge);
        if tripped {
            self.metrics.trips.get_or_create(key).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(model: &str) -> BreakerLabels {
        BreakerLabels {
            provider: "p".into(),
            endpoint: "messages".into(),
            model: model.into(),
        }
    }

    fn config(open_for: Duration) -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            open_for,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = Breakers::default();
        let c = config(Duration::from_secs(60));
        let k = key("m");
        b.report(&k, &c, true);
        b.report(&k, &c, true);
        b.report(&k, &c, false);
        b.report(&k, &c, true);
        b.report(&k, &c, true);
        assert_eq!(b.admit(&k, &c), Admission::Allowed { probe: false });
        b.report(&k, &c, true);
        assert!(matches!(b.admit(&k, &c), Admission::Rejected { .. }));
        assert!(b.is_open(&k));
        assert_eq!(
            b.admit(&key("other"), &c),
            Admission::Allowed { probe: false }
        );
        assert_eq!(b.metrics.trips.get_or_create(&k).get(), 1);
        assert_eq!(b.metrics.rejects.get_or_create(&k).get(), 1);
    }

    #[test]
    fn half_open_probe_closes_or_reopens() {
        let b = Breakers::default();
        let c = config(Duration::ZERO);
        let k = key("m");
        for _ in 0..3 {
            b.report(&k, &c, true);
        }
        assert_eq!(b.admit(&k, &c), Admission::Allowed { probe: true });
        b.report(&k, &c, true);
        assert_eq!(b.metrics.trips.get_or_create(&k).get(), 2);
        assert_eq!(b.admit(&k, &c), Admission::Allowed { probe: true });
        b.report(&k, &c, false);
        assert_eq!(b.admit(&k, &c), Admission::Allowed { probe: false });
        assert_eq!(b.metrics.state.get_or_create(&k).get(), 0);
    }

    #[test]
    fn disabled_breaker_never_rejects() {
        let b = Breakers::default();
        let c = BreakerConfig {
            failures: 0,
            ..BreakerConfig::default()
        };
        for _ in 0..10 {
            b.report(&key("m"), &c, true);
        }
        assert_eq!(b.admit(&key("m"), &c), Admission::Allowed { probe: false });
    }
}
