//! The cache's shared tier: the five things the response cache asks of the
//! shared store (KeyDB, Redis or a Redis Cluster, [`crate::store`]), and
//! the absent tier that stands in when there is none. Every call to a
//! store passes its gate ([`crate::store::Gate`]): while the store
//! recovers from a failure, calls fail at once and count as misses.

use std::time::Duration;

use bytes::Bytes;

use super::CacheStatus;
use crate::store::{Connected, Store, StoreError, commands};

/// Where the tier stands: for `/health` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierHealth {
    /// Where values live right now.
    pub status: CacheStatus,
    /// Failed calls since start.
    pub errors: u64,
}

/// The tier behind the process's own: a store, or none.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync {
    /// The bytes under `key` and their remaining lifetime.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, StoreError>;
    /// Stores `value` under `key` for `ttl` (at least a second).
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError>;
    /// Removes `key`; whether it was there.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Removes the keys that start with `prefix` and contain `containing`;
    /// the keys removed.
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, StoreError>;
    /// Asks whether the tier answers, past any back-off, and records it.
    async fn ping(&self);
    /// Where it stands, from its last call.
    fn health(&self) -> TierHealth;
}

/// The cache's tier in `store`, or the absent one.
pub fn of(store: Option<&Store>) -> std::sync::Arc<dyn SharedTier> {
    match store {
        Some(Store::Node(node)) => node.clone(),
        Some(Store::Cluster(cluster)) => cluster.clone(),
        None => std::sync::Arc::new(NoSharedTier),
    }
}

/// No shared tier (no REDIS_URL): every call succeeds and finds nothing.
pub struct NoSharedTier;

#[async_trait::async_trait]
impl SharedTier for NoSharedTier {
    async fn get(&self, _key: &str) -> Result<Option<(Bytes, Duration)>, StoreError> {
        Ok(None)
    }
    async fn set(&self, _key: &str, _value: &[u8], _ttl: Duration) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _key: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn clear(&self, _prefix: &str, _containing: Option<&str>) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
    async fn ping(&self) {}
    fn health(&self) -> TierHealth {
        TierHealth { status: CacheStatus::InProcess, errors: 0 }
    }
}

#[async_trait::async_trait]
impl<T: Connected> SharedTier for T {
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, StoreError> {
        self.gate().call(async { commands::get_with_ttl(&mut self.connection().await?, key).await }).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.gate()
            .call(async { commands::set_with_ttl(&mut self.connection().await?, key, value, ttl).await })
            .await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.gate().call(async { commands::unlink(&mut self.connection().await?, key).await }).await
    }
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, StoreError> {
        self.gate().call(Connected::clear(self, prefix, containing)).await
    }
    async fn ping(&self) {
        let _ = self.gate().note(Connected::ping(self).await);
    }
    fn health(&self) -> TierHealth {
        let status = if self.gate().is_up() { CacheStatus::Connected } else { CacheStatus::Disconnected };
        TierHealth { status, errors: self.gate().errors() }
    }
}
