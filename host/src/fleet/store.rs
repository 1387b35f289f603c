//! What the fleet asks of the shared store beyond the cache's tier: an
//! event stream, plain keys and hashes (the model, the shared components,
//! the replicas' reports, the client keys), scripts (the keys' limits),
//! leases and a flight's stream (the fleet-wide single-flight). Every call
//! passes the store's gate ([`crate::store::Gate`]), the same one the
//! cache's calls pass, so an outage is counted and logged once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::store::{Connected, Store, StoreError, commands};

/// The fleet's side of the shared store.
#[async_trait::async_trait]
pub trait FleetStore: Send + Sync {
    /// Appends `payload` to `stream`, keeping about its last `keep` entries.
    async fn append(&self, stream: &str, payload: &str, keep: usize) -> Result<(), StoreError>;
    /// The entries of `stream` after id `after`: (id, payload), oldest first.
    async fn read_after(&self, stream: &str, after: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// The id of the last entry of `stream` ("0-0" when it is empty).
    async fn last_id(&self, stream: &str) -> Result<String, StoreError>;
    /// The bytes under `key`, kept without expiry.
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key` without expiry.
    async fn set_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; whether it was there.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Sets `field` of the hash `key`.
    async fn hash_set(&self, key: &str, field: &str, value: &str) -> Result<(), StoreError>;
    /// Every field of the hash `key`.
    async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Removes `field` of the hash `key`.
    async fn hash_delete(&self, key: &str, field: &str) -> Result<(), StoreError>;
    /// Runs `script` over `keys` (one hash tag) with `args`: its integers.
    async fn script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, StoreError>;
    /// Takes the lease `key` for `token` for `ttl` if it is free (`SET NX PX`).
    async fn lease_take(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Extends `token`'s lease by `ttl`; whether `token` still held it.
    async fn lease_renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Removes the lease if `token` still holds it.
    async fn lease_release(&self, key: &str, token: &str) -> Result<(), StoreError>;
    /// Appends (kind, data) entries to `stream`, which then lives `ttl` more.
    async fn flight_append(
        &self,
        stream: &str,
        entries: &[(&str, Bytes)],
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// The entries of `stream` after id `after`: (id, kind, data), waiting
    /// up to `block` for the first, on a connection of its own.
    async fn flight_read(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, StoreError>;
}

/// The fleet's side of `store`.
pub fn of(store: &Store) -> Arc<dyn FleetStore> {
    match store {
        Store::Node(node) => node.clone(),
        Store::Cluster(cluster) => cluster.clone(),
    }
}

/// One command on the store's shared connection, through its gate.
macro_rules! gated {
    ($store:expr, $command:ident($($arg:expr),*)) => {
        $store.gate().call(async { commands::$command(&mut $store.connection().await?, $($arg),*).await }).await
    };
}

#[async_trait::async_trait]
impl<T: Connected> FleetStore for T {
    async fn append(&self, stream: &str, payload: &str, keep: usize) -> Result<(), StoreError> {
        gated!(self, append(stream, payload, keep))
    }
    async fn read_after(&self, stream: &str, after: &str) -> Result<Vec<(String, String)>, StoreError> {
        gated!(self, read_after(stream, after))
    }
    async fn last_id(&self, stream: &str) -> Result<String, StoreError> {
        gated!(self, last_id(stream))
    }
    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        gated!(self, get_raw(key))
    }
    async fn set_raw(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        gated!(self, set_raw(key, value))
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        gated!(self, unlink(key))
    }
    async fn hash_set(&self, key: &str, field: &str, value: &str) -> Result<(), StoreError> {
        gated!(self, hash_set(key, field, value))
    }
    async fn hash_all(&self, key: &str) -> Result<Vec<(String, String)>, StoreError> {
        gated!(self, hash_all(key))
    }
    async fn hash_delete(&self, key: &str, field: &str) -> Result<(), StoreError> {
        gated!(self, hash_delete(key, field))
    }
    async fn script(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        gated!(self, script(script, keys, args))
    }
    async fn lease_take(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        gated!(self, lease_take(key, token, ttl))
    }
    async fn lease_renew(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        gated!(self, lease_renew(key, token, ttl))
    }
    async fn lease_release(&self, key: &str, token: &str) -> Result<(), StoreError> {
        gated!(self, lease_release(key, token))
    }
    async fn flight_append(
        &self,
        stream: &str,
        entries: &[(&str, Bytes)],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        gated!(self, flight_append(stream, entries, ttl))
    }
    async fn flight_read(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, StoreError> {
        self.gate().call(self.blocking_read(stream, after, block)).await
    }
}
