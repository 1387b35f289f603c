//! The shared tier's contract: what the cache asks of KeyDB, Redis or a
//! Redis Cluster ([`super::redis`], [`super::cluster`]), and the absent
//! tier that stands in when there is none. A tier reached through a
//! `redis` connection says only how it connects, clears and pings
//! ([`Connected`]); every other command is the same on one node and on a
//! cluster, and is written once ([`super::commands`]).

use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionLike;

use super::commands;

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
    /// Runs `script` over `keys` (one hash tag) with `args`: its integers.
    async fn script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, TierError>;
    /// Takes the lease `key` for `token` for `ttl` if it is free (`SET NX PX`).
    async fn lease_take(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, TierError>;
    /// Extends `token`'s lease by `ttl`; whether `token` still held it.
    async fn lease_renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, TierError>;
    /// Removes the lease if `token` still holds it.
    async fn lease_release(&self, key: &str, token: &str) -> Result<(), TierError>;
    /// Appends (kind, data) entries to `stream`, which then lives `ttl` more.
    async fn flight_append(
        &self,
        stream: &str,
        entries: &[(&str, Bytes)],
        ttl: Duration,
    ) -> Result<(), TierError>;
    /// The entries of `stream` after id `after`: (id, kind, data), waiting
    /// up to `block` (at most [`MAX_BLOCK`]) for the first, on a connection
    /// of its own.
    async fn flight_read(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, TierError>;
}

/// The longest a blocking read waits: a reader's response timeout is the
/// tier's plus this.
pub const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Connections kept for blocking reads (`XREAD BLOCK`), which must not
/// share the tier's connection: a blocked read holds up every command
/// behind it. A read takes an idle one or makes one, and gives it back
/// when it answered; at most [`Readers::MAX_IDLE`] wait idle, and at most
/// [`Readers::MAX_IN_USE`] are in use at once, so relays stay inside the
/// descriptors the listener keeps back (its `RESERVED_DESCRIPTORS`)
/// however many flights are followed. A read that finds them all in use
/// waits its turn for up to its block time and then reads nothing (never
/// an error: a busy store is not a store that is down); one that waited
/// blocks only briefly, so readers go round.
pub struct Readers<C> {
    idle: std::sync::Mutex<Vec<C>>,
    in_use: tokio::sync::Semaphore,
}

impl<C> Default for Readers<C> {
    fn default() -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            in_use: tokio::sync::Semaphore::new(Self::MAX_IN_USE),
        }
    }
}

/// How long a read that had to wait for a reader blocks.
const TURN: Duration = Duration::from_millis(25);

impl<C> Readers<C> {
    /// Idle readers kept at most.
    pub const MAX_IDLE: usize = 16;
    /// Readers in use at once at most.
    pub const MAX_IN_USE: usize = 64;

    fn take(&self) -> Option<C> {
        self.idle.lock().unwrap_or_else(|poison| poison.into_inner()).pop()
    }

    fn give_back(&self, reader: C) {
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < Self::MAX_IDLE {
            idle.push(reader);
        }
    }

    /// A turn to read blocking up to `block`: the permit and how long to
    /// block, or `None` when no reader freed up within `block`.
    async fn turn(&self, block: Duration) -> Option<(tokio::sync::SemaphorePermit<'_>, Duration)> {
        if let Ok(permit) = self.in_use.try_acquire() {
            return Some((permit, block));
        }
        let permit = tokio::time::timeout(block, self.in_use.acquire()).await.ok()?.ok()?;
        Some((permit, block.min(TURN)))
    }
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
    async fn script(
        &self,
        _script: &redis::Script,
        _keys: &[String],
        _args: &[String],
    ) -> Result<Vec<i64>, TierError> {
        Err(TierError("no shared tier to run a script on".into()))
    }
    async fn lease_take(&self, _key: &str, _token: &str, _ttl: Duration) -> Result<bool, TierError> {
        Err(TierError("no shared tier to share a flight through".into()))
    }
    async fn lease_renew(&self, _key: &str, _token: &str, _ttl: Duration) -> Result<bool, TierError> {
        Ok(false)
    }
    async fn lease_release(&self, _key: &str, _token: &str) -> Result<(), TierError> {
        Ok(())
    }
    async fn flight_append(
        &self,
        _stream: &str,
        _entries: &[(&str, Bytes)],
        _ttl: Duration,
    ) -> Result<(), TierError> {
        Ok(())
    }
    async fn flight_read(
        &self,
        _stream: &str,
        _after: &str,
        _block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, TierError> {
        Ok(Vec::new())
    }
}

/// A tier reached through a `redis` connection: one node or a cluster.
#[async_trait::async_trait]
pub trait Connected: Send + Sync {
    /// The connection its commands go through.
    type Connection: ConnectionLike + Send;
    /// The connection, bounded by the tier's timeout.
    async fn connection(&self) -> Result<Self::Connection, TierError>;
    /// Its name in logs.
    fn name(&self) -> &'static str;
    /// As [`SharedTier::clear`] (a cluster walks every master).
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, TierError>;
    /// As [`SharedTier::ping`] (a cluster pings every master).
    async fn ping(&self) -> Result<(), TierError>;
    /// A new connection for blocking reads (response timeout: the tier's
    /// plus [`MAX_BLOCK`]).
    async fn new_reader(&self) -> Result<Self::Connection, TierError>;
    /// Its idle readers.
    fn readers(&self) -> &Readers<Self::Connection>;
}

#[async_trait::async_trait]
impl<T: Connected> SharedTier for T {
    fn name(&self) -> &'static str {
        Connected::name(self)
    }
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, TierError> {
        Connected::clear(self, prefix, containing).await
    }
    async fn ping(&self) -> Result<(), TierError> {
        Connected::ping(self).await
    }
    async fn get(&self, key: &str) -> Result<Option<(Bytes, Duration)>, TierError> {
        commands::get_with_ttl(&mut self.connection().await?, key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), TierError> {
        commands::set_with_ttl(&mut self.connection().await?, key, value, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool, TierError> {
        commands::unlink(&mut self.connection().await?, key).await
    }
    async fn append(&self, stream: &str, payload: &str, keep: usize) -> Result<(), TierError> {
        commands::append(&mut self.connection().await?, stream, payload, keep).await
    }
    async fn read_after(&self, stream: &str, after: &str) -> Result<Vec<(String, String)>, TierError> {
        commands::read_after(&mut self.connection().await?, stream, after).await
    }
    async fn last_id(&self, stream: &str) -> Result<String, TierError> {
        commands::last_id(&mut self.connection().await?, stream).await
    }
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        commands::get_raw(&mut self.connection().await?, key).await
    }
    async fn set_raw(&self, key: &str, value: &[u8]) -> Result<(), TierError> {
        commands::set_raw(&mut self.connection().await?, key, value).await
    }
    async fn hash_set(&self, key: &str, field: &str, value: &str) -> Result<(), TierError> {
        commands::hash_set(&mut self.connection().await?, key, field, value).await
    }
    async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, TierError> {
        commands::hash_all(&mut self.connection().await?, key).await
    }
    async fn hash_delete(&self, key: &str, field: &str) -> Result<(), TierError> {
        commands::hash_delete(&mut self.connection().await?, key, field).await
    }
    async fn script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, TierError> {
        commands::script(&mut self.connection().await?, script, keys, args).await
    }
    async fn lease_take(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, TierError> {
        commands::lease_take(&mut self.connection().await?, key, token, ttl).await
    }
    async fn lease_renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, TierError> {
        commands::lease_renew(&mut self.connection().await?, key, token, ttl).await
    }
    async fn lease_release(&self, key: &str, token: &str) -> Result<(), TierError> {
        commands::lease_release(&mut self.connection().await?, key, token).await
    }
    async fn flight_append(
        &self,
        stream: &str,
        entries: &[(&str, Bytes)],
        ttl: Duration,
    ) -> Result<(), TierError> {
        commands::flight_append(&mut self.connection().await?, stream, entries, ttl).await
    }
    async fn flight_read(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, TierError> {
        let Some((_turn, block)) = self.readers().turn(block.min(MAX_BLOCK)).await else {
            return Ok(Vec::new());
        };
        let mut reader = match self.readers().take() {
            Some(reader) => reader,
            None => self.new_reader().await?,
        };
        let read = commands::flight_read(&mut reader, stream, after, block).await;
        // A reader that failed may be broken: it is dropped.
        if read.is_ok() {
            self.readers().give_back(reader);
        }
        read
    }
}
