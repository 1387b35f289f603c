//! A stored value with the host's own timestamps, so freshness is judged
//! by one clock (the host's) in both tiers and in every process.
//!
//! The bytes in either tier are `MAGIC`, the storing time and the end of
//! freshness (Unix milliseconds, big-endian), then the value. A value
//! without the header (written before this format) is fresh until it
//! expires, with an unknown age (0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Marks a stamped value; the last byte is the format's version.
const MAGIC: &[u8] = b"llms\x01";
/// MAGIC plus two u64 timestamps.
const HEADER_BYTES: usize = MAGIC.len() + 16;

/// A value and when it was stored and stops being fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    /// What the caller stored.
    pub value: Bytes,
    /// Unix milliseconds when it was stored.
    pub stored_at_ms: u64,
    /// Unix milliseconds until which it is fresh.
    pub fresh_until_ms: u64,
}

/// Unix milliseconds now, by the host's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as u64)
}

impl Stamped {
    /// `value` stored now, fresh for `fresh`.
    pub fn now(value: Bytes, fresh: Duration) -> Self {
        let stored_at_ms = now_ms();
        Self { value, stored_at_ms, fresh_until_ms: stored_at_ms.saturating_add(fresh.as_millis() as u64) }
    }

    /// The bytes a tier holds.
    pub fn encode(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(HEADER_BYTES + self.value.len());
        bytes.put_slice(MAGIC);
        bytes.put_u64(self.stored_at_ms);
        bytes.put_u64(self.fresh_until_ms);
        bytes.put_slice(&self.value);
        bytes.freeze()
    }

    /// Reads a tier's bytes; `left` is the entry's remaining life there.
    pub fn decode(bytes: Bytes, left: Duration) -> Self {
        if bytes.len() >= HEADER_BYTES && bytes.starts_with(MAGIC) {
            let number = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let (stored_at_ms, fresh_until_ms) = (number(MAGIC.len()), number(MAGIC.len() + 8));
            return Self { value: bytes.slice(HEADER_BYTES..), stored_at_ms, fresh_until_ms };
        }
        let now = now_ms();
        Self { value: bytes, stored_at_ms: now, fresh_until_ms: now.saturating_add(left.as_millis() as u64) }
    }

    /// Whether it is fresh at `now_ms`.
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    /// Whether it expired at most `window` before `now_ms`.
    pub fn within_stale_window(&self, now_ms: u64, window: Duration) -> bool {
        now_ms < self.fresh_until_ms.saturating_add(window.as_millis() as u64)
    }

    /// Whole seconds since it was stored.
    pub fn age_s(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_at_ms) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_value_reads_back_as_written() {
        let stamped = Stamped { value: Bytes::from_static(b"{\"a\":1}"), stored_at_ms: 7, fresh_until_ms: 9 };
        assert_eq!(Stamped::decode(stamped.encode(), Duration::ZERO), stamped);
    }

    #[test]
    fn an_unstamped_value_is_fresh_until_it_expires() {
        let read = Stamped::decode(Bytes::from_static(b"plain"), Duration::from_secs(10));
        assert_eq!(read.value, "plain");
        let now = now_ms();
        assert!(read.is_fresh(now));
        assert!(!read.is_fresh(now + 11_000));
    }

    #[test]
    fn the_stale_window_starts_where_freshness_ends() {
        let stamped = Stamped { value: Bytes::new(), stored_at_ms: 0, fresh_until_ms: 1000 };
        assert!(!stamped.is_fresh(1000));
        assert!(stamped.within_stale_window(1500, Duration::from_secs(1)));
        assert!(!stamped.within_stale_window(2000, Duration::from_secs(1)));
    }
}
