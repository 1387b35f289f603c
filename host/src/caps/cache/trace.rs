//! What a request's lookups found: the tier a fresh value came from and
//! how long it stays fresh, read after the handler answered (the
//! `Cache-Status` header) and by the edge tier (a replay is never fresher
//! than the answer it replays).

use std::sync::{Arc, Mutex};

/// The tier a value was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The in-process tier.
    Memory,
    /// KeyDB, Redis or a Redis Cluster.
    Shared,
}

impl Tier {
    /// Its name in a trace, as `Cache-Status` names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Shared => "keydb",
        }
    }
}

/// A fresh value a request's lookup found: where, and until when it is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshFound {
    /// The tier that had it.
    pub tier: Tier,
    /// Unix milliseconds until which it is fresh.
    pub fresh_until_ms: u64,
}

/// What one request's lookups found fresh (the latest), for its
/// `Cache-Status` header and for the edge tier, which never keeps a replay
/// longer than the answer it replays stays fresh.
#[derive(Debug, Clone, Default)]
pub struct LookupTrace(Arc<Mutex<Option<FreshFound>>>);

impl LookupTrace {
    /// Records a fresh value found.
    pub fn record(&self, found: FreshFound) {
        *self.0.lock().unwrap_or_else(|poison| poison.into_inner()) = Some(found);
    }

    /// The latest fresh value found, if any.
    pub fn latest(&self) -> Option<FreshFound> {
        *self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}
