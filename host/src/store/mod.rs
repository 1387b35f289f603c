//! The shared store: KeyDB, Redis or a Redis Cluster, as the replicas'
//! common memory. This module knows connections, not meanings: how to
//! reach one node ([`redis`]) or a cluster ([`cluster`]), the commands
//! both send ([`commands`]), the readers kept apart for blocking reads
//! ([`readers`]), and the [`Gate`] every call passes, which skips the store
//! for a short back-off after it failed and counts and logs its outages
//! once. What the commands mean belongs to their callers: the response
//! cache's tier ([`crate::caps::cache::tier`]) and the fleet
//! ([`crate::fleet`]).
//!
//! Without REDIS_URL or REDIS_CLUSTER_NODES there is no store: [`Store::open`]
//! says so once, at wiring, and nothing downstream compares names.

pub mod cluster;
pub mod commands;
pub mod gate;
pub mod readers;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionLike;
use bytes::Bytes;

pub use self::gate::Gate;
pub use self::readers::{MAX_BLOCK, Readers};

/// A failed call to the store, as text: callers only log and count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl From<::redis::RedisError> for StoreError {
    fn from(error: ::redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A store reached through a `redis` connection: one node or a cluster.
/// Every command but a clear and a ping is the same on both, and is
/// written once in [`commands`].
#[async_trait::async_trait]
pub trait Connected: Send + Sync {
    /// The connection its commands go through.
    type Connection: ConnectionLike + Send;
    /// The connection, bounded by the store's timeout.
    async fn connection(&self) -> Result<Self::Connection, StoreError>;
    /// Its name in logs.
    fn name(&self) -> &'static str;
    /// Removes the keys that start with `prefix` and contain `containing`
    /// ([`cleared_by`]); the keys removed (a cluster walks every master).
    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, StoreError>;
    /// Whether it answers (a cluster pings every master).
    async fn ping(&self) -> Result<(), StoreError>;
    /// A new connection for blocking reads (response timeout: the store's
    /// plus [`MAX_BLOCK`]).
    async fn new_reader(&self) -> Result<Self::Connection, StoreError>;
    /// Its idle readers.
    fn readers(&self) -> &Readers<Self::Connection>;
    /// The gate its calls pass.
    fn gate(&self) -> &Gate;

    /// The (kind, data) entries of `stream` after id `after`, waiting up to
    /// `block` (at most [`MAX_BLOCK`]) for the first, on a reader of its
    /// own; nothing when every reader is busy for that long.
    async fn blocking_read(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<Vec<(String, String, Bytes)>, StoreError> {
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

/// The store this replica shares, if one is configured.
#[derive(Clone)]
pub enum Store {
    /// KeyDB or Redis, one node (REDIS_URL).
    Node(Arc<redis::SingleNode>),
    /// A Redis Cluster (REDIS_CLUSTER_NODES).
    Cluster(Arc<cluster::Cluster>),
}

impl Store {
    /// The store `url` or `cluster_nodes` name (the nodes win), connected
    /// lazily, each call bounded by `timeout`; `None` when neither is set.
    /// Its error count joins the service's metrics in `registry`.
    pub fn open(
        url: Option<&str>,
        cluster_nodes: Option<&[String]>,
        timeout: Duration,
        registry: &prometheus::Registry,
    ) -> Result<Option<Self>, StoreError> {
        let gate = Gate::new(registry);
        Ok(match (url, cluster_nodes) {
            (_, Some(nodes)) => Some(Self::Cluster(Arc::new(cluster::Cluster::new(nodes, timeout, gate)?))),
            (Some(url), None) => Some(Self::Node(Arc::new(redis::SingleNode::new(url, timeout, gate)?))),
            (None, None) => None,
        })
    }

    /// Its name in logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Node(node) => node.name(),
            Self::Cluster(cluster) => cluster.name(),
        }
    }
}

/// Whether `key` is one a clear of `prefix` (and `containing`, looked for
/// after the prefix, as the store's scan glob does) removes, in every tier
/// and replay: the glob only narrows a scan; this exact test decides.
/// After the prefix: a prefix ending with the separator must not make
/// `:{x}:` match the segment right after it (a prompt hash given as a
/// character would clear that prompt's answers in process only).
pub fn cleared_by(key: &str, prefix: &str, containing: Option<&str>) -> bool {
    key.strip_prefix(prefix).is_some_and(|rest| containing.is_none_or(|infix| rest.contains(infix)))
}
