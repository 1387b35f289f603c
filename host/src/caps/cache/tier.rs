//! The shared tier's contract: what the cache asks of KeyDB, Redis or a
//! Redis Cluster ([`super::redis`], [`super::cluster`]), and the absent
//! tier that stands in when there is none.

use std::time::Duration;

use bytes::Bytes;

/// A shared tier's failure, as text: callers only log and count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierError(pub String);

impl From<::redis::RedisError> for TierError {
    fn from(error: ::redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

/// The tier behind the process's own: KeyDB, or none.
#[async_trait::async_trait]
pub trait SharedTier: Send + Sync {
    /// The bytes under `key` and their remaining lifetime.
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, TierError>;
    /// Stores `value` under `key` for `ttl` (at least a second).
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), TierError>;
    /// Removes `key`; whether it was there.
    async fn delete(&self, key: &str) -> Result<bool, TierError>;
    /// Removes the keys that start with `prefix` and contain `containing`;
    /// the keys removed.
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, TierError>;
    /// Whether the tier answers.
    async fn ping(&self) -> Result<(), TierError>;
    /// Its name in logs; "none" marks the absent tier.
    fn name(&self) -> &'static str;
    /// Appends `payload` to `stream`, keeping about its last `keep` entries.
    async fn append(&self, stream: &str, payload: &str, keep: usize) -> Result<(), TierError>;
    /// The entries of `stream` after id `after`: (id, payload), oldest first.
    async fn read_after(&self, stream: &str, after: &str) -> Result<Vec<(String, String)>, TierError>;
    /// The id of the last entry of `stream` ("0-0" when it is empty).
    async fn last_id(&self, stream: &str) -> Result<String, TierError>;
    /// The bytes under `key`, kept without expiry.
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, TierError>;
    /// Stores `value` under `key` without expiry.
    async fn set_raw(&self, key: &str, value: &[u8]) -> Result<(), TierError>;
    /// Sets `field` of the hash `key`.
    async fn hash_set(&self, key: &str, field: &str, value: &str) -> Result<(), TierError>;
    /// Every field of the hash `key`.
    async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, TierError>;
    /// Removes `field` of the hash `key`.
    async fn hash_delete(&self, key: &str, field: &str) -> Result<(), TierError>;
}

/// No shared tier (no REDIS_URL): every call succeeds and finds nothing.
pub struct NoSharedTier;

#[async_trait::async_trait]
impl SharedTier for NoSharedTier {
    async fn get(&self, _key: &str) -> Result<Option<(Bytes, Duration)>, TierError> {
        Ok(None)
    }
    async fn set(&self, _key: &str, _value: &[u8], _ttl: Duration) -> Result<(), TierError> {
        Ok(())
    }
    async fn delete(&self, _key: &str) -> Result<bool, TierError> {
        Ok(false)
    }
    async fn clear(&self, _prefix: &str, _containing: Option<&str>) -> Result<Vec<String>, TierError> {
        Ok(Vec::new())
    }
    async fn ping(&self) -> Result<(), TierError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "none"
    }
    async fn append(&self, _stream: &str, _payload: &str, _keep: usize) -> Result<(), TierError> {
        Ok(())
    }
    async fn read_after(&self, _stream: &str, _after: &str) -> Result<Vec<(String, String)>, TierError> {
        Ok(Vec::new())
    }
    async fn last_id(&self, _stream: &str) -> Result<String, TierError> {
        Ok("0-0".into())
    }
    async fn get_raw(&self, _key: &str) -> Result<Option<Vec<u8>>, TierError> {
        Ok(None)
    }
    async fn set_raw(&self, _key: &str, _value: &[u8]) -> Result<(), TierError> {
        Ok(())
    }
    async fn hash_set(&self, _key: &str, _field: &str, _value: &str) -> Result<(), TierError> {
        Ok(())
    }
    async fn hash_all(&self, _key: &str) -> Result<Vec<(String, String)>, TierError> {
        Ok(Vec::new())
    }
    async fn hash_delete(&self, _key: &str, _field: &str) -> Result<(), TierError> {
        Ok(())
    }
}
