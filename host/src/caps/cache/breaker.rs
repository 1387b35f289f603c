//! The shared tier's circuit breaker: after a failed call, calls skip
//! KeyDB for [`BACKOFF`] (they count as misses at once) instead of each
//! waiting out its own timeout, so an outage costs at most one timeout per
//! period, not one per request. The background health check keeps probing
//! meanwhile, and when the period is over exactly one call tries KeyDB
//! again (the others keep skipping while it does): a success closes the
//! breaker, a failure opens it for another period. Calls already in flight
//! when KeyDB fails fail with it; nothing can spare those.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
