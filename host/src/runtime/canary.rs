//! A canary handler version: a candidate that serves a share of requests
//! beside the stable version, watched and dropped on its own when it does
//! worse.
//!
//! - **Split**: a request goes to the canary when the hash of its routing
//!   key ([`crate::routing::RoutingKey`]) falls in the canary's share, so
//!   one conversation (or one client request id) always sees one version.
//! - **Windows**: the last [`CanaryPolicy::min_requests`] answers of each
//!   side (status class and time to the response head).
//! - **Verdict** once the canary's window is full: dropped when its 5xx
//!   rate exceeds the stable's by more than `max_error_delta`, or its p99
//!   exceeds `max_latency_ratio` × the stable's by more than
//!   [`LATENCY_NOISE_FLOOR`] (compared only when the stable's window is
//!   full too); dropped at once when it traps. Nothing
//!   restarts: the next request simply routes to the stable version.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::versions::HandlerVersion;

/// Latency differences smaller than this are noise, whatever their ratio:
/// a cache hit takes well under a millisecond, and a fresh version's first
/// instances (not yet reused) are a little slower without being worse.
pub const LATENCY_NOISE_FLOOR: Duration = Duration::from_millis(50);

/// When a canary is dropped on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryPolicy {
    /// Off: a canary serves until promoted or dropped by hand.
    pub auto_rollback: bool,
    /// Answers in each window; no verdict before the canary's is full.
    pub min_requests: usize,
    /// Largest tolerated excess of the canary's 5xx rate over the stable's.
    pub max_error_delta: f64,
    /// Largest tolerated ratio of the canary's p99 to the stable's.
    pub max_latency_ratio: f64,
}

/// Why a canary was dropped; the `reason` label of its counter.
#[derive(Debug, Clone, PartialEq)]
pub enum DropReason {
    /// It trapped.
    Trap,
    /// Its 5xx rate exceeded the stable's by more than the policy allows.
    Errors {
        /// The canary's 5xx rate.
        canary: f64,
        /// The stable's.
        stable: f64,
    },
    /// Its p99 exceeded the stable's by more than the policy allows.
    Latency {
        /// The canary's p99.
        canary: Duration,
        /// The stable's.
        stable: Duration,
    },
    /// An operator dropped it.
    Operator,
}

impl DropReason {
    /// Its metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Errors { .. } => "errors",
            Self::Latency { .. } => "latency",
            Self::Operator => "operator",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trap => write!(f, "the canary trapped"),
            Self::Errors { canary, stable } => {
                write!(f, "5xx rate {:.1}% against the stable's {:.1}%", canary * 100.0, stable * 100.0)
            }
            Self::Latency { canary, stable } => write!(f, "p99 {canary:?} against the stable's {stable:?}"),
            Self::Operator => write!(f, "dropped by an operator"),
        }
    }
}

/// The last answers of one side.
#[derive(Debug, Default)]
pub struct Window {
    answers: VecDeque<(bool, Duration)>,
}

impl Window {
    fn push(&mut self, server_error: bool, latency: Duration, capacity: usize) {
        if self.answers.len() == capacity {
            self.answers.pop_front();
        }
        self.answers.push_back((server_error, latency));
    }

    /// Answers in the window.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether it holds no answer.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The share of 5xx answers (0 when empty).
    pub fn error_rate(&self) -> f64 {
        if self.answers.is_empty() {
            return 0.0;
        }
        self.answers.iter().filter(|(error, _)| *error).count() as f64 / self.answers.len() as f64
    }

    /// The 99th percentile of the time to the response head (0 when empty).
    pub fn p99(&self) -> Duration {
        let mut latencies: Vec<Duration> = self.answers.iter().map(|(_, latency)| *latency).collect();
        latencies.sort_unstable();
        let rank = (latencies.len() as f64 * 0.99).ceil() as usize;
        latencies.get(rank.saturating_sub(1)).copied().unwrap_or_default()
    }
}

/// A candidate version and its share.
pub struct Canary {
    /// The candidate.
    pub version: Arc<HandlerVersion>,
    percent: AtomicU32,
    /// (stable, canary) since the canary started.
    windows: Mutex<(Window, Window)>,
}

impl Canary {
    /// `version` serving `percent` of requests.
    pub fn new(version: Arc<HandlerVersion>, percent: u32) -> Self {
        Self { version, percent: AtomicU32::new(percent.min(100)), windows: Mutex::default() }
    }

    /// Its share, in percent.
    pub fn percent(&self) -> u32 {
        self.percent.load(Ordering::Relaxed)
    }

    /// Changes its share.
    pub fn set_percent(&self, percent: u32) {
        self.percent.store(percent.min(100), Ordering::Relaxed);
    }

    /// Whether a request whose routing key hashes to `bucket` (0..10_000)
    /// goes to the canary.
    pub fn takes(&self, bucket: u32) -> bool {
        bucket < self.percent() * 100
    }

    /// Records one answer of the canary (`is_canary`) or the stable side;
    /// returns why the canary must go, if it must.
    pub fn record(
        &self,
        is_canary: bool,
        status: u16,
        latency: Duration,
        trapped: bool,
        policy: &CanaryPolicy,
    ) -> Option<DropReason> {
        let capacity = policy.min_requests.max(1);
        let mut windows = self.windows.lock().unwrap_or_else(|poison| poison.into_inner());
        let (stable, canary) = &mut *windows;
        let window = if is_canary { &mut *canary } else { &mut *stable };
        window.push(status >= 500, latency, capacity);
        if !policy.auto_rollback || !is_canary {
            return None;
        }
        if trapped {
            return Some(DropReason::Trap);
        }
        verdict(stable, canary, capacity, policy)
    }

    /// (stable, canary): answers, 5xx rate and p99 in each window.
    pub fn windows(&self) -> [(usize, f64, Duration); 2] {
        let windows = self.windows.lock().unwrap_or_else(|poison| poison.into_inner());
        let describe = |window: &Window| (window.len(), window.error_rate(), window.p99());
        [describe(&windows.0), describe(&windows.1)]
    }
}

/// The rules, on full windows.
fn verdict(stable: &Window, canary: &Window, capacity: usize, policy: &CanaryPolicy) -> Option<DropReason> {
    if canary.len() < capacity {
        return None;
    }
    let (canary_errors, stable_errors) = (canary.error_rate(), stable.error_rate());
    if canary_errors - stable_errors > policy.max_error_delta {
        return Some(DropReason::Errors { canary: canary_errors, stable: stable_errors });
    }
    let (canary_p99, stable_p99) = (canary.p99(), stable.p99());
    let slower = canary_p99.as_secs_f64() > policy.max_latency_ratio * stable_p99.as_secs_f64()
        && canary_p99 > stable_p99 + LATENCY_NOISE_FLOOR;
    if stable.len() >= capacity && slower {
        return Some(DropReason::Latency { canary: canary_p99, stable: stable_p99 });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CanaryPolicy =
        CanaryPolicy { auto_rollback: true, min_requests: 10, max_error_delta: 0.05, max_latency_ratio: 2.0 };

    fn fill(window: &mut Window, count: usize, errors: usize, latency_ms: u64) {
        for index in 0..count {
            window.push(index < errors, Duration::from_millis(latency_ms), POLICY.min_requests);
        }
    }

    #[test]
    fn no_verdict_before_the_canary_window_is_full() {
        let (mut stable, mut canary) = (Window::default(), Window::default());
        fill(&mut stable, 10, 0, 5);
        fill(&mut canary, 9, 9, 5);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY), None);
        fill(&mut canary, 1, 1, 5);
        assert!(matches!(verdict(&stable, &canary, 10, &POLICY), Some(DropReason::Errors { .. })));
    }

    #[test]
    fn errors_within_the_delta_pass_and_beyond_it_drop() {
        let (mut stable, mut canary) = (Window::default(), Window::default());
        fill(&mut stable, 10, 1, 5);
        fill(&mut canary, 10, 1, 5);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY), None, "equal rates");
        fill(&mut canary, 10, 2, 5);
        let reason = verdict(&stable, &canary, 10, &POLICY).expect("20% against 10%");
        assert_eq!(reason.label(), "errors");
        assert!(reason.to_string().contains("20.0%"), "{reason}");
    }

    #[test]
    fn latency_compares_p99s_once_both_windows_are_full() {
        let (mut stable, mut canary) = (Window::default(), Window::default());
        fill(&mut canary, 10, 0, 200);
        fill(&mut stable, 9, 0, 60);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY), None, "the stable's window is not full");
        fill(&mut stable, 1, 0, 60);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY).unwrap().label(), "latency");
        fill(&mut canary, 10, 0, 119);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY), None, "under 2x");
        fill(&mut stable, 10, 0, 1);
        fill(&mut canary, 10, 0, 40);
        assert_eq!(verdict(&stable, &canary, 10, &POLICY), None, "40x, but by less than the noise floor");
    }

    #[test]
    fn a_window_keeps_only_its_last_answers() {
        let mut window = Window::default();
        fill(&mut window, 10, 10, 1);
        fill(&mut window, 10, 0, 1);
        assert_eq!((window.len(), window.error_rate()), (10, 0.0));
        assert_eq!(Window::default().p99(), Duration::ZERO);
    }
}
