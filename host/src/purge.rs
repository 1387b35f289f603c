//! Purges: what changes the answer a request would get tells the tiers
//! that keep answers in front of the handler (the edge tier, [`crate::caps::edge`]).
//!
//! A leaf: the cache, the model state, the handler versions and the plugins
//! hold a [`SharedPurges`] and call it synchronously, so that once their
//! change returns, no kept replay from before it is served. Without a tier
//! to purge, [`NoPurges`] does nothing.

use std::sync::Arc;

/// Why everything kept was purged (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeCause {
    /// The current model changed, or the model split did.
    Model,
    /// A handler version was installed, rolled back, or a canary changed.
    Handler,
    /// A prompt plugin was loaded or unloaded.
    Plugin,
}

impl PurgeCause {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Handler => "handler",
            Self::Plugin => "plugin",
        }
    }
}

/// A tier that keeps answers in front of the handler.
pub trait Purges: Send + Sync {
    /// Called when every kept answer may be wrong now. The default does nothing.
    fn purge_all(&self, _cause: PurgeCause) {}

    /// Called after a cache clear of the keys that start with `prefix` and
    /// contain `containing`: kept answers with such a tag go. The default
    /// does nothing.
    fn purge_cleared(&self, _prefix: &str, _containing: Option<&str>) {}
}

/// Nothing to purge.
pub struct NoPurges;

impl Purges for NoPurges {}

/// A handle every owner of answer-changing state holds.
pub type SharedPurges = Arc<dyn Purges>;

/// The handle for "nothing to purge".
pub fn none() -> SharedPurges {
    Arc::new(NoPurges)
}
