//! `llm-service:host/cache`: the response cache, two tiers.
//!
//! Reads try the in-process tier ([`memory`]), then KeyDB ([`redis`]),
//! copying a KeyDB hit into the process; writes go to both. Without
//! REDIS_URL the process tier serves alone. A KeyDB failure is an
//! `unavailable` error for that call (callers treat it as a miss): it is
//! counted, logged once per outage (a warning when it starts, a note when
//! it ends), and the connection manager reconnects by itself. Identical
//! work in flight is shared through [`flight`].

pub mod config;
pub mod flight;
mod host;
pub mod memory;
pub mod redis;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use self::config::CacheConfig;
pub use self::flight::FlightLease;
use self::flight::FlightTable;
pub use self::host::{CacheView, Flight, add_to_linker};
use self::memory::MemoryTier;
use self::redis::RedisTier;

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

/// The cache, shared by every request.
pub struct ResponseCache {
    memory: MemoryTier,
    shared: Option<RedisTier>,
    flights: Arc<FlightTable>,
    max_value_bytes: u64,
    shared_up: AtomicBool,
    errors: AtomicU64,
}

impl ResponseCache {
    /// Builds both tiers from `config`; KeyDB is connected lazily.
    pub fn new(config: &CacheConfig) -> Result<Self, CacheError> {
        let shared = match &config.redis_url {
            Some(url) => Some(
                RedisTier::new(url, config.redis_timeout())
                    .map_err(|error| CacheError::Unavailable { reason: error.to_string() })?,
            ),
            None => None,
        };
        Ok(Self {
            memory: MemoryTier::new(config.cache_max_size),
            shared,
            flights: Arc::default(),
            max_value_bytes: config.cache_max_value_bytes,
            shared_up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
        })
    }

    /// Pings KeyDB (if configured) and records the result, so the status
    /// follows KeyDB even while no request uses the cache.
    pub async fn ping(&self) {
        if let Some(shared) = &self.shared {
            let result = shared.ping().await;
            let _ = self.note(result.map_err(|error| error.to_string()));
        }
    }

    /// The live value under `key` and its remaining lifetime.
    pub async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, CacheError> {
        check_key(key)?;
        let now = Instant::now();
        if let Some(entry) = self.memory.get(key) {
            return Ok(Some((entry.value.clone(), entry.expires_at.saturating_duration_since(now))));
        }
        let Some(shared) = &self.shared else { return Ok(None) };
        let found = self.note(shared.get(key).await.map_err(|error| error.to_string()))?;
        if let Some((value, ttl)) = &found {
            self.memory.set(key, value.clone(), now + *ttl);
        }
        Ok(found)
    }

    /// Stores `value` under `key` for `ttl` in both tiers.
    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        check_key(key)?;
        let bytes = value.len() as u64;
        if bytes > self.max_value_bytes {
            return Err(CacheError::TooLarge { bytes, limit: self.max_value_bytes });
        }
        let ttl = ttl.max(Duration::from_secs(1));
        self.memory.set(key, value.clone(), Instant::now() + ttl);
        match &self.shared {
            Some(shared) => self.note(shared.set(key, &value, ttl).await.map_err(|error| error.to_string())),
            None => Ok(()),
        }
    }

    /// Removes `key` from both tiers; whether it was in either.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        let in_memory = self.memory.delete(key);
        match &self.shared {
            Some(shared) => {
                let shared_had = self.note(shared.delete(key).await.map_err(|error| error.to_string()))?;
                Ok(in_memory || shared_had)
            }
            None => Ok(in_memory),
        }
    }

    /// Removes the keys starting with `prefix` (and containing `containing`)
    /// from both tiers; how many distinct keys went.
    pub async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<u64, CacheError> {
        if prefix.is_empty() {
            return Err(CacheError::InvalidKey { reason: "a clear needs a prefix" });
        }
        let matches =
            |key: &str| key.starts_with(prefix) && containing.is_none_or(|infix| key.contains(infix));
        let mut removed: HashSet<String> = HashSet::new();
        let memory_count = self.memory.clear(|key| {
            let hit = matches(key);
            if hit {
                removed.insert(key.to_string());
            }
            hit
        });
        let Some(shared) = &self.shared else { return Ok(memory_count) };
        let shared_keys =
            self.note(shared.clear(prefix, containing).await.map_err(|error| error.to_string()))?;
        removed.extend(shared_keys);
        Ok(removed.len() as u64)
    }

    /// Where values live right now (from the last KeyDB call).
    pub fn status(&self) -> CacheStatus {
        match (&self.shared, self.shared_up.load(Ordering::Relaxed)) {
            (None, _) => CacheStatus::InProcess,
            (Some(_), true) => CacheStatus::Connected,
            (Some(_), false) => CacheStatus::Disconnected,
        }
    }

    /// KeyDB errors since start.
    pub fn errors_total(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The single-flight table.
    pub fn flights(&self) -> &Arc<FlightTable> {
        &self.flights
    }

    /// Records a KeyDB call's result: counts failures and logs outages once.
    fn note<T>(&self, result: Result<T, String>) -> Result<T, CacheError> {
        match result {
            Ok(value) => {
                if !self.shared_up.swap(true, Ordering::AcqRel) {
                    tracing::info!(cap = "cache", "shared cache reachable again");
                }
                Ok(value)
            }
            Err(reason) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if self.shared_up.swap(false, Ordering::AcqRel) {
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
