//! The in-process tier: at most CACHE_MAX_SIZE entries and CACHE_MAX_BYTES
//! bytes (keys and values), least recently used evicted first (moka with
//! its LRU policy), each expiring at its own TTL. Never fails.
//!
//! One moka bound holds both: an entry weighs its bytes, and at least the
//! byte bound's share of one entry (`max_bytes / max_entries`), so neither
//! many small answers nor a few large ones pass their bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// One cached value and when it expires.
#[derive(Debug, Clone)]
pub struct MemoryEntry {
    /// The value.
    pub value: Bytes,
    /// When it stops being served.
    pub expires_at: Instant,
}

struct ExpireAtEntryDeadline;

impl Expiry<String, Arc<MemoryEntry>> for ExpireAtEntryDeadline {
    fn expire_after_create(&self, _key: &String, entry: &Arc<MemoryEntry>, now: Instant) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<MemoryEntry>,
        now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }
}

/// The in-process tier; a bound of 0 makes every call a no-op.
pub struct MemoryTier {
    entries: Option<Cache<String, Arc<MemoryEntry>>>,
}

impl MemoryTier {
    /// A tier holding at most `max_entries` entries of `max_bytes` bytes in all.
    pub fn new(max_entries: u64, max_bytes: u64) -> Self {
        let entries = (max_entries > 0 && max_bytes > 0).then(|| {
            // Rounded down, so max_entries small entries fit exactly.
            let least = u32::try_from((max_bytes / max_entries).max(1)).unwrap_or(u32::MAX);
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |key: &String, entry: &Arc<MemoryEntry>| {
                    let bytes = u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX);
                    bytes.max(least)
                })
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ExpireAtEntryDeadline)
                .build()
        });
        Self { entries }
    }

    /// The entries' weight now: at least their bytes.
    pub fn weighed_bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            entries.run_pending_tasks();
            entries.weighted_size()
        })
    }

    /// The live entry under `key`.
    pub fn get(&self, key: &str) -> Option<Arc<MemoryEntry>> {
        let entry = self.entries.as_ref()?.get(key)?;
        // moka expires lazily; never serve a value past its deadline.
        (entry.expires_at > Instant::now()).then_some(entry)
    }

    /// Stores `value` under `key` until `expires_at`.
    pub fn set(&self, key: &str, value: Bytes, expires_at: Instant) {
        if let Some(entries) = &self.entries {
            entries.insert(key.to_string(), Arc::new(MemoryEntry { value, expires_at }));
            // moka evicts in batches; settle now so the bound holds after
            // every insert (inserts are misses: rare next to hits).
            entries.run_pending_tasks();
        }
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&self, key: &str) -> bool {
        self.entries.as_ref().and_then(|entries| entries.remove(key)).is_some()
    }

    /// Removes the keys `matches` accepts; how many.
    pub fn clear(&self, mut matches: impl FnMut(&str) -> bool) -> u64 {
        let Some(entries) = &self.entries else { return 0 };
        let doomed: Vec<Arc<String>> =
            entries.iter().map(|(key, _)| key).filter(|key| matches(key)).collect();
        doomed.iter().filter(|key| entries.remove(key.as_str()).is_some()).count() as u64
    }

    /// Entries held now (after pending evictions run).
    pub fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |entries| {
            entries.run_pending_tasks();
            entries.entry_count()
        })
    }

    /// Whether the tier holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later(seconds: u64) -> Instant {
        Instant::now() + Duration::from_secs(seconds)
    }

    #[test]
    fn the_capacity_bound_holds_and_the_least_recently_used_go_first() {
        let tier = MemoryTier::new(10, 1 << 20);
        for index in 0..50 {
            tier.set(&format!("k{index}"), Bytes::from_static(b"v"), later(60));
            assert!(tier.len() <= 10, "{} entries", tier.len());
        }
        assert!((40..50).all(|index| tier.get(&format!("k{index}")).is_some()));
        assert!(tier.get("k39").is_none());
    }

    #[test]
    fn the_byte_bound_holds_for_large_answers() {
        let tier = MemoryTier::new(1_000, 20_000_000);
        let answer = Bytes::from(vec![b'x'; 900_000]);
        for index in 0..100 {
            tier.set(&format!("k{index}"), answer.clone(), later(60));
            assert!(tier.weighed_bytes() <= 20_000_000, "{} bytes", tier.weighed_bytes());
        }
        assert!((15..=22).contains(&tier.len()), "about 20 MB of 0.9 MB answers: {}", tier.len());
        assert!(tier.get("k99").is_some(), "the newest stays");
    }

    #[test]
    fn an_expired_entry_is_never_served() {
        let tier = MemoryTier::new(10, 1 << 20);
        tier.set("k", Bytes::from_static(b"v"), Instant::now());
        assert!(tier.get("k").is_none());
    }

    #[test]
    fn clear_removes_only_matching_keys() {
        let tier = MemoryTier::new(10, 1 << 20);
        tier.set("llm_response:a:peter:x", Bytes::from_static(b"1"), later(60));
        tier.set("llm_response:b:lois:x", Bytes::from_static(b"2"), later(60));
        assert_eq!(tier.clear(|key| key.contains(":peter:")), 1);
        assert!(tier.get("llm_response:b:lois:x").is_some());
    }

    #[test]
    fn zero_capacity_turns_the_tier_off() {
        let tier = MemoryTier::new(0, 1 << 20);
        tier.set("k", Bytes::from_static(b"v"), later(60));
        assert!(tier.get("k").is_none());
    }
}
