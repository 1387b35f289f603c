//! The sampled quality checks' verdict ([`super::quality`]), kept apart
//! from the checks that reach it so that the telemetry capability, which
//! shows it in /health, depends on the verdict alone.

use std::sync::RwLock;

/// The latest verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Checks are off.
    Off,
    /// No round has finished yet.
    Pending,
    /// Every probe of the latest round passed.
    Ok,
    /// A probe failed: what failed, first one only.
    Degraded(String),
}

/// The verdict, shared with every request's view of the host.
#[derive(Debug)]
pub struct QualityState(RwLock<Verdict>);

impl Default for QualityState {
    fn default() -> Self {
        Self(RwLock::new(Verdict::Off))
    }
}

impl QualityState {
    /// The latest verdict.
    pub fn get(&self) -> Verdict {
        self.0.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Records the latest round's verdict.
    pub fn set(&self, verdict: Verdict) {
        *self.0.write().unwrap_or_else(|poison| poison.into_inner()) = verdict;
    }
}
