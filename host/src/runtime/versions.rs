//! The handler versions: the one serving (an atomic pointer that requests
//! load once and hold to their end), the previous ones kept for rollback,
//! and at most one canary serving a share beside it ([`super::canary`]).
//!
//! Swap semantics: `install` and `rollback` replace the pointer atomically;
//! a request that started before keeps the version it loaded, every request
//! that loads after gets the new one, and a version is freed when the last
//! request (or instance) holding it ends and it has left the history.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};

use super::canary::{Canary, CanaryPolicy, DropReason};
use super::handler::HandlerComponent;
use crate::purge::{PurgeCause, SharedPurges};
use crate::routing::RoutingKey;

/// The salt of the canary split's buckets.
const CANARY_SALT: &str = "canary";

/// One loaded handler.
pub struct HandlerVersion {
    /// 1 for the version loaded at start, then counting up.
    pub number: u64,
    /// The compiled, pre-instantiated component.
    pub component: HandlerComponent,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its size in bytes.
    pub size: usize,
}

impl HandlerVersion {
    /// The short form of its sha256 used in `X-Handler-Version`.
    pub fn tag(&self) -> &str {
        self.component.tag()
    }
}

/// Why a rollback could not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackError {
    /// Nothing was served before the current version.
    #[error("there is no previous version to roll back to")]
    NoPrevious,
    /// No kept version has that sha256 (or prefix).
    #[error("no kept version matches sha256 {sha256}")]
    Unknown {
        /// What was asked for.
        sha256: String,
    },
}

/// No canary to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no canary is serving")]
pub struct NoCanary;

/// The current version, the history and the canary.
pub struct HandlerVersions {
    current: ArcSwap<HandlerVersion>,
    /// Previous versions, most recent first.
    previous: Mutex<VecDeque<Arc<HandlerVersion>>>,
    canary: ArcSwapOption<Canary>,
    policy: CanaryPolicy,
    next_number: AtomicU64,
    keep: usize,
    /// Told of every change of what serves: replays of the old do not outlive it.
    purges: SharedPurges,
}

impl HandlerVersions {
    /// Starts with `first` serving; keeps `keep` previous versions; drops
    /// canaries under `policy`.
    pub fn new(first: HandlerComponent, size: usize, keep: usize, policy: CanaryPolicy) -> Self {
        let first = HandlerVersion { number: 1, component: first, loaded_at: SystemTime::now(), size };
        Self {
            current: ArcSwap::from_pointee(first),
            previous: Mutex::default(),
            canary: ArcSwapOption::empty(),
            policy,
            next_number: AtomicU64::new(2),
            keep,
            purges: crate::purge::none(),
        }
    }

    /// Tells `purges` of every change of the serving version or canary.
    pub fn with_purges(mut self, purges: SharedPurges) -> Self {
        self.purges = purges;
        self
    }

    fn changed(&self) {
        self.purges.purge_all(PurgeCause::Handler);
    }

    /// The version a request with `key` runs on: the canary's when its
    /// bucket falls in the canary's share, else the current one.
    pub fn pick(&self, key: RoutingKey) -> Arc<HandlerVersion> {
        match &*self.canary.load() {
            Some(canary) if canary.takes(key.bucket(CANARY_SALT)) => canary.version.clone(),
            _ => self.current(),
        }
    }

    /// The canary, if one serves.
    pub fn canary(&self) -> Option<Arc<Canary>> {
        self.canary.load_full()
    }

    /// Whether `version` is the canary serving now.
    pub fn is_canary(&self, version: &Arc<HandlerVersion>) -> bool {
        self.canary.load().as_ref().is_some_and(|canary| Arc::ptr_eq(&canary.version, version))
    }

    /// Makes `component` the canary at `percent`, replacing any canary.
    pub fn start_canary(&self, component: HandlerComponent, size: usize, percent: u32) -> Arc<Canary> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let version = Arc::new(HandlerVersion { number, component, loaded_at: SystemTime::now(), size });
        let canary = Arc::new(Canary::new(version, percent));
        self.canary.store(Some(canary.clone()));
        self.changed();
        tracing::info!(number, sha256 = canary.version.component.sha256(), percent, "handler canary serving");
        canary
    }

    /// Changes the canary's share.
    pub fn set_canary_percent(&self, percent: u32) -> Result<Arc<Canary>, NoCanary> {
        let canary = self.canary().ok_or(NoCanary)?;
        canary.set_percent(percent);
        self.changed();
        tracing::info!(sha256 = canary.version.component.sha256(), percent, "handler canary share changed");
        Ok(canary)
    }

    /// Makes the canary the serving version for every request.
    pub fn promote(&self) -> Result<Arc<HandlerVersion>, NoCanary> {
        let canary = self.canary.swap(None).ok_or(NoCanary)?;
        self.replace(canary.version.clone());
        Ok(canary.version.clone())
    }

    /// Stops the canary; every request goes to the current version again.
    pub fn drop_canary(&self, reason: &DropReason) -> Result<Arc<HandlerVersion>, NoCanary> {
        let canary = self.canary.swap(None).ok_or(NoCanary)?;
        self.changed();
        log_dropped(&canary, reason);
        Ok(canary.version.clone())
    }

    /// Records an answer by `version` for the canary's verdict; drops the
    /// canary (and returns why) when the policy says so.
    pub fn record(
        &self,
        version: &Arc<HandlerVersion>,
        status: u16,
        latency: std::time::Duration,
        trapped: bool,
    ) -> Option<DropReason> {
        let canary = self.canary()?;
        let is_canary = Arc::ptr_eq(version, &canary.version);
        if !is_canary && !Arc::ptr_eq(version, &*self.current.load()) {
            return None;
        }
        let reason = canary.record(is_canary, status, latency, trapped, &self.policy)?;
        // Only the first of racing answers finds the same canary still there.
        let still_serving = self.canary.compare_and_swap(&Some(canary.clone()), None);
        if still_serving.as_ref().is_some_and(|current| Arc::ptr_eq(current, &canary)) {
            self.changed();
            log_dropped(&canary, &reason);
            return Some(reason);
        }
        None
    }

    /// The version serving now; hold it for the whole request.
    pub fn current(&self) -> Arc<HandlerVersion> {
        self.current.load_full()
    }

    /// Makes `component` the serving version; returns it.
    pub fn install(&self, component: HandlerComponent, size: usize) -> Arc<HandlerVersion> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let version = Arc::new(HandlerVersion { number, component, loaded_at: SystemTime::now(), size });
        self.replace(version.clone());
        version
    }

    /// Serves the previous version again, or the kept one whose sha256
    /// starts with `sha256`.
    pub fn rollback(&self, sha256: Option<&str>) -> Result<Arc<HandlerVersion>, RollbackError> {
        let target = {
            let previous = self.lock();
            match sha256 {
                None => previous.front().cloned().ok_or(RollbackError::NoPrevious)?,
                Some(sha256) => previous
                    .iter()
                    .find(|version| !sha256.is_empty() && version.component.sha256().starts_with(sha256))
                    .cloned()
                    .ok_or_else(|| RollbackError::Unknown { sha256: sha256.to_string() })?,
            }
        };
        self.replace(target.clone());
        Ok(target)
    }

    /// The current version and the kept previous ones, most recent first.
    pub fn list(&self) -> (Arc<HandlerVersion>, Vec<Arc<HandlerVersion>>) {
        (self.current(), self.lock().iter().cloned().collect())
    }

    fn replace(&self, next: Arc<HandlerVersion>) {
        let mut previous = self.lock();
        let old = self.current.swap(next.clone());
        previous.retain(|version| !Arc::ptr_eq(version, &next) && !Arc::ptr_eq(version, &old));
        previous.push_front(old);
        previous.truncate(self.keep);
        drop(previous);
        self.changed();
        tracing::info!(
            number = next.number,
            sha256 = next.component.sha256(),
            source = next.component.source_name(),
            "handler version now serving"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<HandlerVersion>>> {
        self.previous.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

fn log_dropped(canary: &Canary, reason: &DropReason) {
    tracing::warn!(
        sha256 = canary.version.component.sha256(),
        reason = reason.label(),
        why = %reason,
        "handler canary dropped"
    );
}
