//! Cache hits, summed for the log: instead of an info line per hit (a
//! busy service answers thousands a second from its cache), one info line
//! per [`SUMMARY_INTERVAL`] says how many there were. Lock-free: a hit is
//! two atomic operations, and the one that finds the interval over writes
//! the line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the hits are summed into an info line (at the first hit after it).
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// Hits since the last summary, and when that was.
#[derive(Debug)]
pub struct HitSummary {
    started: Instant,
    hits: AtomicU64,
    /// Milliseconds after `started` of the last summary.
    last_ms: AtomicU64,
}

impl Default for HitSummary {
    fn default() -> Self {
        Self { started: Instant::now(), hits: AtomicU64::new(0), last_ms: AtomicU64::new(0) }
    }
}

impl HitSummary {
    /// Counts a hit; when the interval is over, the hits it closes (this
    /// one included) and how long it lasted, for the caller to log.
    pub fn note_hit(&self) -> Option<(u64, Duration)> {
        self.hits.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last_ms = self.last_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last_ms) < SUMMARY_INTERVAL.as_millis() as u64 {
            return None;
        }
        // One hit closes the interval; the others see it moved.
        self.last_ms.compare_exchange(last_ms, now_ms, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        Some((self.hits.swap(0, Ordering::AcqRel), Duration::from_millis(now_ms - last_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_within_the_interval_are_only_counted() {
        let summary = HitSummary::default();
        assert!((0..1000).all(|_| summary.note_hit().is_none()));
        assert_eq!(summary.hits.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn the_first_hit_after_the_interval_sums_them_all() {
        let summary = HitSummary {
            started: Instant::now() - SUMMARY_INTERVAL - Duration::from_secs(1),
            ..HitSummary::default()
        };
        summary.hits.store(41, Ordering::Relaxed);
        let (hits, since) = summary.note_hit().expect("the interval is over");
        assert_eq!(hits, 42);
        assert!(since >= SUMMARY_INTERVAL);
        assert!(summary.note_hit().is_none(), "a new interval starts");
    }
}
