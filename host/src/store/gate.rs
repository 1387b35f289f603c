//! The gate every call to the store passes: a circuit breaker, and the
//! outage's count and log lines. After a failed call, calls skip the
//! store for [`BACKOFF`] (a cache read counts as a miss at once) instead of each
//! waiting out its own timeout, so an outage costs at most one timeout per
//! period, not one per request. The background health check keeps probing
//! meanwhile, and when the period is over exactly one call tries KeyDB
//! again (the others keep skipping while it does): a success closes the
//! breaker, a failure opens it for another period. Calls already in flight
//! when KeyDB fails fail with it; nothing can spare those.
//!
//! An outage is logged once (a warning when it starts, a note when it
//! ends; each at most once a minute, for a store that flaps) and every
//! failed call is counted in `llm_service_cache_errors_total`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;
use crate::registry::counter;

/// Every call to the store passes here.
pub struct Gate {
    breaker: Breaker,
    up: AtomicBool,
    errors: prometheus::IntCounter,
    outage_log: LogLimit,
    recovery_log: LogLimit,
}

impl Gate {
    /// A closed gate; its error count joins the service's metrics in
    /// `registry`.
    pub fn new(registry: &prometheus::Registry) -> Self {
        Self {
            breaker: Breaker::default(),
            up: AtomicBool::new(true),
            errors: counter(registry, "llm_service_cache_errors_total", "Failed calls to the shared cache."),
            outage_log: LogLimit::default(),
            recovery_log: LogLimit::default(),
        }
    }

    /// Makes `call` unless the breaker is open (then it fails at once).
    pub async fn call<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        if !self.breaker.allows() {
            return Err(StoreError("skipped while the shared cache recovers".into()));
        }
        self.note(call.await)
    }

    /// Records a call's result, whether or not the breaker let it through
    /// (a health check probes regardless): counts failures, logs outages
    /// once, and opens or closes the breaker.
    pub fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.breaker.reset();
                if !self.up.swap(true, Ordering::AcqRel) && self.recovery_log.may_log() {
                    tracing::info!(cap = "cache", "shared cache reachable again");
                }
                Ok(value)
            }
            Err(StoreError(reason)) => {
                self.errors.inc();
                self.breaker.trip();
                // A cluster with one master down flaps between up and down
                // (other masters answer): each line at most once per
                // OUTAGE_LOG_EVERY.
                if self.up.swap(false, Ordering::AcqRel) && self.outage_log.may_log() {
                    tracing::warn!(cap = "cache", error = %reason, "shared cache unavailable; serving without it until it returns");
                }
                Err(StoreError(reason))
            }
        }
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Failed calls since start.
    pub fn errors(&self) -> u64 {
        self.errors.get()
    }
}

/// How long calls skip KeyDB after it failed.
pub const BACKOFF: Duration = Duration::from_secs(2);

/// Outage log lines at most once per this long.
pub const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Rate-limits the outage lines: a tier that flaps (a cluster with one
/// master down answers some calls and fails others) logs once a minute, not
/// once per flap.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: std::sync::Mutex<Option<Instant>>,
}

impl LogLimit {
    /// Whether a line may go out now (and records it if so).
    pub fn may_log(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|poison| poison.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < OUTAGE_LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Open (skipping) until a moment, or closed.
#[derive(Debug)]
pub struct Breaker {
    base: Instant,
    /// Milliseconds after `base` until which calls skip; 0 = closed.
    open_until_ms: AtomicU64,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { base: Instant::now(), open_until_ms: AtomicU64::new(0) }
    }
}

impl Breaker {
    /// Whether a call may go to KeyDB now: always while closed; once the
    /// period is over, for the one call that claims the probe.
    pub fn allows(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        if now < until {
            return false;
        }
        // The probe re-arms the period for everyone else until it resolves.
        let rearmed = now + BACKOFF.as_millis() as u64;
        self.open_until_ms.compare_exchange(until, rearmed, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// A call failed: skip KeyDB for [`BACKOFF`].
    pub fn trip(&self) {
        let until = self.now_ms() + BACKOFF.as_millis() as u64;
        self.open_until_ms.store(until, Ordering::Relaxed);
    }

    /// A call succeeded.
    pub fn reset(&self) {
        self.open_until_ms.store(0, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        // Offset by one so that "0" always means closed.
        self.base.elapsed().as_millis() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_it_for_the_backoff_and_a_success_closes_it() {
        let breaker = Breaker::default();
        assert!(breaker.allows());
        breaker.trip();
        assert!(!breaker.allows());
        breaker.reset();
        assert!(breaker.allows());
    }

    #[test]
    fn when_the_backoff_is_over_exactly_one_call_probes() {
        let breaker = Breaker { base: Instant::now() - BACKOFF * 2, ..Breaker::default() };
        breaker.open_until_ms.store(1, Ordering::Relaxed);
        assert!(breaker.allows(), "the first call probes");
        assert!(!breaker.allows(), "the others skip while it does");
        breaker.reset();
        assert!(breaker.allows() && breaker.allows(), "closed again");
    }
}
