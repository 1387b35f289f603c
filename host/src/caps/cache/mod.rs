//! `llm-service:host/cache`: the response cache, two tiers.
//!
//! Reads try the in-process tier ([`memory`]), then KeyDB ([`redis`]; or a
//! Redis Cluster, [`cluster`]), copying a KeyDB hit into the process;
//! writes go to both. Without REDIS_URL or REDIS_CLUSTER_NODES the process
//! tier serves alone. A KeyDB failure is an
//! `unavailable` error for that call (callers treat it as a miss): it is
//! counted, logged once per outage (a warning when it starts, a note when
//! it ends; each at most once a minute, for a tier that flaps), and the
//! connection manager reconnects by itself. Identical
//! work in flight is shared through [`flight`], and across replicas through
//! [`shared_flight`].
//!
//! The cache protocol is the host's: [`ResponseCache::lookup`] answers a
//! fresh value, or the flight to lead or follow (plus any stale value),
//! judging freshness by the host's clock ([`stamped`]);
//! [`ResponseCache::land`] stores and wakes every follower in one call.
//! "No KeyDB" is the [`NoSharedTier`], not a special case. After a KeyDB
//! failure, calls skip it for a short back-off ([`breaker`]), so an outage
//! costs one timeout per period, not one per request.

pub mod breaker;
pub mod cluster;
mod commands;
pub mod config;
pub mod events;
pub mod flight;
mod host;
pub mod key_store;
pub mod memory;
pub mod redis;
mod shared_flight;
pub mod stamped;
pub mod tier;
mod trace;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::breaker::Breaker;
use self::cluster::ClusterTier;
pub use self::config::CacheConfig;
pub use self::flight::FlightLease;
use self::flight::{FlightTable, Follower, Join};
pub use self::host::{CacheView, Flight, Follow, Lead, add_to_linker};
use self::memory::MemoryTier;
use self::redis::RedisTier;
use self::stamped::{Stamped, now_ms};
pub use self::tier::{NoSharedTier, SharedTier, TierError};
pub use self::trace::{FreshFound, LookupTrace, Tier};
use crate::purge::SharedPurges;
use crate::registry::{counter, counter_vec};

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

/// The cache, shared by every request.
pub struct ResponseCache {
    memory: MemoryTier,
    shared: Arc<dyn SharedTier>,
    flights: Arc<FlightTable>,
    max_value_bytes: u64,
    shared_up: AtomicBool,
    breaker: Breaker,
    errors: prometheus::IntCounter,
    /// Process leaders by their part in the fleet's flight.
    fleet_flights: prometheus::IntCounterVec,
    outage_log: breaker::LogLimit,
    recovery_log: breaker::LogLimit,
    /// This process's name among replicas ([`events`]).
    replica: String,
    /// Told of every clear, so no replay of a cleared answer is served.
    purges: SharedPurges,
}

impl ResponseCache {
    /// Builds both tiers from `config`; KeyDB is connected lazily. Its
    /// error count joins the service's metrics in `registry`.
    pub fn new(config: &CacheConfig, registry: &prometheus::Registry) -> Result<Self, CacheError> {
        let unavailable = |error: ::redis::RedisError| CacheError::Unavailable { reason: error.to_string() };
        let shared: Arc<dyn SharedTier> = match (&config.redis_url, &config.redis_cluster_nodes) {
            (_, Some(nodes)) => {
                Arc::new(ClusterTier::new(&nodes.0, config.redis_timeout()).map_err(unavailable)?)
            }
            (Some(url), None) => Arc::new(RedisTier::new(url, config.redis_timeout()).map_err(unavailable)?),
            (None, None) => Arc::new(NoSharedTier),
        };
        Ok(Self {
            memory: MemoryTier::new(config.cache_max_size, config.cache_max_bytes),
            shared,
            flights: Arc::default(),
            max_value_bytes: config.cache_max_value_bytes,
            shared_up: AtomicBool::new(true),
            breaker: Breaker::default(),
            errors: counter(registry, "llm_service_cache_errors_total", "Failed calls to the shared cache."),
            fleet_flights: counter_vec(
                registry,
                "llm_service_cache_shared_flights_total",
                "Generations a replica would lead, by their part in the fleet's single-flight: led, relayed (another replica leads), found (landed meanwhile), in_process (store unavailable).",
                &["role"],
            ),
            outage_log: breaker::LogLimit::default(),
            recovery_log: breaker::LogLimit::default(),
            replica: format!("{:016x}", fastrand::u64(..)),
            purges: crate::purge::none(),
        })
    }

    /// Tells `purges` of every clear from now on (local or from the fleet).
    pub fn with_purges(mut self, purges: SharedPurges) -> Self {
        self.purges = purges;
        self
    }

    /// Pings KeyDB (if configured) and records the result, so the status
    /// follows KeyDB even while no request uses the cache.
    pub async fn ping(&self) {
        let result = self.shared.ping().await;
        let _ = self.note(result);
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
        let found = self.shared_call(|| self.shared.get(key)).await?;
        Ok(found.map(|(bytes, left)| {
            self.memory.set(key, bytes.clone(), now + left);
            (Stamped::decode(bytes, left), Tier::Shared)
        }))
    }

    /// One lookup for a generation: a fresh value from either tier, or else
    /// the key's flight to lead or follow, with any value that expired less
    /// than `stale_window` ago. A leader re-reads the process tier after
    /// joining, so a flight that landed between the read and the join is a
    /// hit, not a second generation. With a shared tier, the process's
    /// leader leads or follows the fleet's flight ([`shared_flight`]).
    /// Cache errors count as misses.
    pub async fn lookup(self: &Arc<Self>, key: &str, stale_window: Duration) -> Lookup {
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
                None => self.share_flight(key, lease).await,
            },
        };
        Lookup { found, stale }
    }

    /// The fresh value under `key` in either tier, if any.
    async fn fresh(&self, key: &str) -> Option<Stamped> {
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
    /// request arriving at any point finds the value or the flight. A flight
    /// shared with other replicas ends after KeyDB has the value, for the
    /// same reason across the fleet.
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
        // Other replicas learn of the end from the shared stream: it comes
        // after KeyDB has the value. This process's followers wake at once.
        let ends_later = if lease.is_mirrored() {
            Some(lease)
        } else {
            lease.finish(flight::End::Landed(value.clone()));
            None
        };
        let stored = match checked {
            Ok(()) => self.shared_call(|| self.shared.set(key, &bytes, keep)).await,
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
        self.shared_call(|| self.shared.set(key, &bytes, ttl)).await
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
        let shared_had = self.shared_call(|| self.shared.delete(key)).await?;
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
        let shared_keys = self.shared_call(|| self.shared.clear(prefix, containing)).await?;
        removed.extend(shared_keys);
        // The other replicas drop their process tier's copies too.
        let event = events::FleetEvent::Clear {
            origin: self.replica.clone(),
            prefix: prefix.to_string(),
            containing: containing.map(str::to_string),
        };
        let _ = self.publish(&event).await;
        Ok(removed.len() as u64)
    }

    /// Where values live right now (from the last KeyDB call).
    pub fn status(&self) -> CacheStatus {
        match (self.shared.name(), self.shared_up.load(Ordering::Relaxed)) {
            ("none", _) => CacheStatus::InProcess,
            (_, true) => CacheStatus::Connected,
            (_, false) => CacheStatus::Disconnected,
        }
    }

    /// KeyDB errors since start.
    pub fn errors_total(&self) -> u64 {
        self.errors.get()
    }

    /// The single-flight table.
    pub fn flights(&self) -> &Arc<FlightTable> {
        &self.flights
    }

    /// Makes a KeyDB call unless the breaker is open (then it fails at once).
    async fn shared_call<T, F>(&self, call: impl FnOnce() -> F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, TierError>>,
    {
        if !self.breaker.allows() {
            return Err(CacheError::Unavailable { reason: "skipped while the shared cache recovers".into() });
        }
        self.note(call().await)
    }

    /// Records a KeyDB call's result: counts failures, logs outages once,
    /// and opens or closes the breaker.
    fn note<T>(&self, result: Result<T, TierError>) -> Result<T, CacheError> {
        match result {
            Ok(value) => {
                self.breaker.reset();
                if !self.shared_up.swap(true, Ordering::AcqRel) && self.recovery_log.may_log() {
                    tracing::info!(cap = "cache", "shared cache reachable again");
                }
                Ok(value)
            }
            Err(TierError(reason)) => {
                self.errors.inc();
                self.breaker.trip();
                // A cluster with one master down flaps between up and down
                // (other masters answer): each line at most once per
                // OUTAGE_LOG_EVERY.
                if self.shared_up.swap(false, Ordering::AcqRel) && self.outage_log.may_log() {
                    tracing::warn!(cap = "cache", error = %reason, "shared cache unavailable; serving without it until it returns");
                }
                Err(CacheError::Unavailable { reason })
            }
        }
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

/// Whether `key` is one a clear of `prefix` (and `containing`, looked for
/// after the prefix, as the shared tier's scan glob does) removes, in every
/// tier and replay: the glob only narrows a scan; this exact test decides.
/// After the prefix: a prefix ending with the separator must not make
/// `:{x}:` match the segment right after it (a prompt hash given as a
/// character would clear that prompt's answers in process only).
pub fn cleared_by(key: &str, prefix: &str, containing: Option<&str>) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| containing.is_none_or(|infix| rest.contains(infix)))
}
