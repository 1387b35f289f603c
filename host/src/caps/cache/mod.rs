//! `llm-service:host/cache`: the response cache, two tiers.
//!
//! Reads try the in-process tier ([`memory`]), then the shared store's
//! ([`tier`]: KeyDB, Redis or a Redis Cluster, [`crate::store`]), copying a
//! shared hit into the process; writes go to both. Without REDIS_URL or
//! REDIS_CLUSTER_NODES the process tier serves alone: "no store" is the
//! [`NoSharedTier`], not a special case. A store failure is an
//! `unavailable` error for that call (callers treat it as a miss); the
//! store's gate counts it, logs the outage once and skips the store for a
//! short back-off, so an outage costs one timeout per period, not one per
//! request. Identical work in flight is shared through [`flight`]; beyond
//! this process, whoever shares flights (the fleet, [`crate::fleet`]) is
//! asked to widen a leader's flight through [`FlightSharing`].
//!
//! The cache protocol is the host's: [`ResponseCache::lookup`] answers a
//! fresh value, or the flight to lead or follow (plus any stale value),
//! judging freshness by the host's clock ([`stamped`]);
//! [`ResponseCache::land`] stores and wakes every follower in one call.

pub mod config;
pub mod flight;
mod host;
pub mod memory;
pub mod stamped;
pub mod tier;
mod trace;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use self::config::CacheConfig;
pub use self::flight::FlightLease;
use self::flight::{FlightTable, Follower, Join};
pub use self::host::{CacheView, Flight, Follow, Lead, add_to_linker};
use self::memory::MemoryTier;
use self::stamped::{Stamped, now_ms};
pub use self::tier::{NoSharedTier, SharedTier, TierHealth};
pub use self::trace::{FreshFound, LookupTrace, Tier};
use crate::purge::SharedPurges;
use crate::store::StoreError;
pub use crate::store::cleared_by;

/// Longest key accepted.
const MAX_KEY_BYTES: usize = 1024;

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// KeyDB did not answer.
    #[error("the shared cache is unavailable: {reason}")]
    Unavailable {
        /// The client's explanation.
        reason: String,
    },
    /// The value is over the limit.
    #[error("a value of {bytes} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// CACHE_MAX_VALUE_BYTES.
        limit: u64,
    },
    /// The key is empty or too long.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong.
        reason: &'static str,
    },
}

impl From<StoreError> for CacheError {
    fn from(StoreError(reason): StoreError) -> Self {
        Self::Unavailable { reason }
    }
}

/// Where values live right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// No KeyDB configured.
    InProcess,
    /// KeyDB answered the last call.
    Connected,
    /// KeyDB failed the last call.
    Disconnected,
}

/// Where a generation's answer comes from (see [`ResponseCache::lookup`]).
pub enum Found {
    /// A fresh value, and the tier it came from.
    Fresh(Stamped, Tier),
    /// Nobody computes it: the caller does.
    Lead(FlightLease),
    /// Somebody does: follow.
    Follow(Follower),
}

/// What [`ResponseCache::lookup`] found.
pub struct Lookup {
    /// Where the answer comes from.
    pub found: Found,
    /// An expired value still within the caller's stale window.
    pub stale: Option<Stamped>,
}

/// What the cache asks of whoever shares its flights and clears beyond
/// this process: the fleet with a store, [`NotShared`] without.
#[async_trait::async_trait]
pub trait FlightSharing: Send + Sync {
    /// For this process's leader of `key` (`lease`): lead the wider
    /// flight, follow it, or find the answer landed meanwhile (`cache`
    /// reads it).
    async fn widen(&self, cache: &ResponseCache, key: &str, lease: FlightLease) -> Found;
    /// Keys starting with `prefix` (and containing `containing`) were
    /// cleared here.
    async fn cleared(&self, prefix: &str, containing: Option<&str>);
}

/// Nothing beyond this process: a leader leads, a clear stays here.
pub struct NotShared;

#[async_trait::async_trait]
impl FlightSharing for NotShared {
    async fn widen(&self, _cache: &ResponseCache, _key: &str, lease: FlightLease) -> Found {
        Found::Lead(lease)
    }
    async fn cleared(&self, _prefix: &str, _containing: Option<&str>) {}
}

/// The cache, shared by every request.
pub struct ResponseCache {
    memory: MemoryTier,
    shared: Arc<dyn SharedTier>,
    flights: Arc<FlightTable>,
    max_value_bytes: u64,
    /// Widens flights and clears beyond this process.
    sharing: Arc<dyn FlightSharing>,
    /// Told of every clear, so no replay of a cleared answer is served.
    purges: SharedPurges,
}

impl ResponseCache {
    /// The process tier sized by `config`, in front of `shared`.
    pub fn new(config: &CacheConfig, shared: Arc<dyn SharedTier>) -> Self {
        Self {
            memory: MemoryTier::new(config.cache_max_size, config.cache_max_bytes),
            shared,
            flights: Arc::default(),
            max_value_bytes: config.cache_max_value_bytes,
            sharing: Arc::new(NotShared),
            purges: crate::purge::none(),
        }
    }

    /// Asks `sharing` to widen flights and clears from now on.
    pub fn with_sharing(mut self, sharing: Arc<dyn FlightSharing>) -> Self {
        self.sharing = sharing;
        self
    }

    /// Tells `purges` of every clear from now on (local or from the fleet).
    pub fn with_purges(mut self, purges: SharedPurges) -> Self {
        self.purges = purges;
        self
    }

    /// Pings the store (if configured) and records the result, so the
    /// status follows it even while no request uses the cache.
    pub async fn ping(&self) {
        self.shared.ping().await;
    }

    /// The stamped value under `key` in either tier, whatever its
    /// freshness; a KeyDB hit is copied into the process.
    async fn read(&self, key: &str) -> Result<Option<(Stamped, Tier)>, CacheError> {
        check_key(key)?;
        let now = Instant::now();
        if let Some(entry) = self.memory.get(key) {
            let left = entry.expires_at.saturating_duration_since(now);
            return Ok(Some((Stamped::decode(entry.value.clone(), left), Tier::Memory)));
        }
        let found = self.shared.get(key).await?;
        Ok(found.map(|(bytes, left)| {
            self.memory.set(key, bytes.clone(), now + left);
            (Stamped::decode(bytes, left), Tier::Shared)
        }))
    }

    /// One lookup for a generation: a fresh value from either tier, or else
    /// the key's flight to lead or follow, with any value that expired less
    /// than `stale_window` ago. A leader re-reads the process tier after
    /// joining, so a flight that landed between the read and the join is a
    /// hit, not a second generation. The process's leader is then offered
    /// to whoever shares flights ([`FlightSharing::widen`]), which may make
    /// it lead or follow the fleet's flight.
    /// Cache errors count as misses.
    pub async fn lookup(&self, key: &str, stale_window: Duration) -> Lookup {
        let found = self.read(key).await.ok().flatten();
        let now = now_ms();
        let stale = match found {
            Some((stamped, tier)) if stamped.is_fresh(now) => {
                return Lookup { found: Found::Fresh(stamped, tier), stale: None };
            }
            Some((stamped, _)) => stamped.within_stale_window(now, stale_window).then_some(stamped),
            None => None,
        };
        let found = match self.flights.join(key) {
            Join::Follow(follower) => Found::Follow(follower),
            Join::Lead(lease) => match self.memory_fresh(key) {
                Some(stamped) => {
                    lease.finish(flight::End::Landed(stamped.value.clone()));
                    Found::Fresh(stamped, Tier::Memory)
                }
                None => self.sharing.widen(self, key, lease).await,
            },
        };
        Lookup { found, stale }
    }

    /// The fresh value under `key` in either tier, if any.
    pub async fn fresh(&self, key: &str) -> Option<Stamped> {
        let (stamped, _) = self.read(key).await.ok().flatten()?;
        Some(stamped).filter(|stamped| stamped.is_fresh(now_ms()))
    }

    fn memory_fresh(&self, key: &str) -> Option<Stamped> {
        let entry = self.memory.get(key)?;
        let left = entry.expires_at.saturating_duration_since(Instant::now());
        Some(Stamped::decode(entry.value.clone(), left)).filter(|stamped| stamped.is_fresh(now_ms()))
    }

    /// Stores `value` under `key` (fresh for `fresh`, kept `stale` longer;
    /// nothing is stored when `fresh` is zero) and ends `lease` with it:
    /// the process tier first, then the followers wake, then KeyDB, so a
    /// request arriving at any point finds the value or the flight. A
    /// mirrored flight (widened beyond this process) ends after KeyDB has
    /// the value, for the same reason beyond it.
    pub async fn land(
        &self,
        lease: FlightLease,
        key: &str,
        value: Bytes,
        fresh: Duration,
        stale: Duration,
    ) -> Result<(), CacheError> {
        if fresh.is_zero() {
            lease.finish(flight::End::Landed(value));
            return Ok(());
        }
        let checked = self.check_value(key, &value);
        let stamped = Stamped::now(value.clone(), fresh);
        let (bytes, keep) = (stamped.encode(), (fresh + stale).max(Duration::from_secs(1)));
        if checked.is_ok() {
            self.memory.set(key, bytes.clone(), Instant::now() + keep);
        }
        // Followers elsewhere learn of the end from the mirror: it comes
        // after KeyDB has the value. This process's followers wake at once.
        let ends_later = if lease.is_mirrored() {
            Some(lease)
        } else {
            lease.finish(flight::End::Landed(value.clone()));
            None
        };
        let stored = match checked {
            Ok(()) => self.shared.set(key, &bytes, keep).await.map_err(CacheError::from),
            Err(error) => Err(error),
        };
        if let Some(mirrored) = ends_later {
            mirrored.finish(flight::End::Landed(value));
        }
        stored
    }

    /// The live value under `key` and its remaining lifetime (the first
    /// 0.1 protocol: freshness is the caller's).
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, CacheError> {
        let found = self.read(key).await?.map(|(stamped, _)| stamped);
        let now = now_ms();
        Ok(found.filter(|stamped| stamped.is_fresh(now)).map(|stamped| {
            let left = Duration::from_millis(stamped.fresh_until_ms.saturating_sub(now));
            (stamped.value, left)
        }))
    }

    /// Stores `value` under `key` for `ttl` in both tiers (the first 0.1
    /// protocol: fresh for its whole life).
    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.check_value(key, &value)?;
        let ttl = ttl.max(Duration::from_secs(1));
        let bytes = Stamped::now(value, ttl).encode();
        self.memory.set(key, bytes.clone(), Instant::now() + ttl);
        Ok(self.shared.set(key, &bytes, ttl).await?)
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), CacheError> {
        check_key(key)?;
        let bytes = value.len() as u64;
        if bytes > self.max_value_bytes {
            return Err(CacheError::TooLarge { bytes, limit: self.max_value_bytes });
        }
        Ok(())
    }

    /// Removes `key` from both tiers; whether it was in either.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        let in_memory = self.memory.delete(key);
        let shared_had = self.shared.delete(key).await?;
        Ok(in_memory || shared_had)
    }

    /// Removes the keys starting with `prefix` (and containing `containing`)
    /// from both tiers; how many distinct keys went.
    pub async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<u64, CacheError> {
        if prefix.is_empty() {
            return Err(CacheError::InvalidKey { reason: "a clear needs a prefix" });
        }
        let mut removed: HashSet<String> = HashSet::new();
        self.memory.clear(|key| {
            let hit = cleared_by(key, prefix, containing);
            if hit {
                removed.insert(key.to_string());
            }
            hit
        });
        self.purges.purge_cleared(prefix, containing);
        let shared_keys = self.shared.clear(prefix, containing).await?;
        removed.extend(shared_keys);
        // Whoever shares the store drops its process tier's copies too.
        self.sharing.cleared(prefix, containing).await;
        Ok(removed.len() as u64)
    }

    /// Removes matching keys from this process's tier only (the shared
    /// tier was cleared elsewhere); how many went.
    pub fn clear_here(&self, prefix: &str, containing: Option<&str>) -> u64 {
        self.purges.purge_cleared(prefix, containing);
        self.memory.clear(|key| cleared_by(key, prefix, containing))
    }

    /// Where values live right now (from the last store call).
    pub fn status(&self) -> CacheStatus {
        self.shared.health().status
    }

    /// Failed store calls since start.
    pub fn errors_total(&self) -> u64 {
        self.shared.health().errors
    }

    /// The single-flight table.
    pub fn flights(&self) -> &Arc<FlightTable> {
        &self.flights
    }
}

fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() {
        return Err(CacheError::InvalidKey { reason: "empty" });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(CacheError::InvalidKey { reason: "over 1024 bytes" });
    }
    Ok(())
}
