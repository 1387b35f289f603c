//! What the keys need of a shared store (KeyDB, Redis or a Redis
//! Cluster), so that every replica knows every key and counts one limit:
//! the records, a key's minute and day in one atomic call, and what each
//! key used today. The fleet implements it
//! ([`crate::fleet::keys`]); without a store there is none, decided
//! once at wiring.

use super::ClientKey;
use super::limits::{Limits, Used};

/// A failed call to the store, as text: the keys log it and fall back.
pub type StoreError = String;

/// One key's use today, fleet-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyUse {
    /// Requests admitted today.
    pub requests_today: u64,
    /// Tokens generated today.
    pub tokens_today: u64,
    /// Unix seconds of its last request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
}

/// The keys' side of a shared store.
#[async_trait::async_trait]
pub trait SharedKeys: Send + Sync + std::fmt::Debug {
    /// Every key record in the store.
    async fn load(&self) -> Result<Vec<ClientKey>, StoreError>;
    /// Writes `key`'s record and tells the other replicas.
    async fn put(&self, key: &ClientKey) -> Result<(), StoreError>;
    /// What key `id` used before now, and, if `limits` admit it, counts
    /// this request: one atomic call.
    async fn take(&self, id: &str, limits: &Limits, now_s: u64) -> Result<Used, StoreError>;
    /// Counts `tokens` generated for key `id` in its minute and its day.
    async fn spend(&self, id: &str, tokens: u64, now_s: u64) -> Result<(), StoreError>;
    /// Adds `uses` (key id, what this replica counted since it last added)
    /// to today's totals.
    async fn add_use(&self, uses: &[(String, KeyUse)], now_s: u64) -> Result<(), StoreError>;
    /// Today's totals of the keys `ids`, in their order.
    async fn use_today(&self, ids: &[&str], now_s: u64) -> Result<Vec<KeyUse>, StoreError>;
}
