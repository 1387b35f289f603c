//! The store on a Redis Cluster (REDIS_CLUSTER_NODES lists seed
//! nodes): the `redis` crate's cluster client, which follows the slot map,
//! redirections and failovers by itself. Connected lazily, like the single
//! node, so the service starts while the cluster is down; every call
//! is bounded by the same timeout. Values live under their own key's slot;
//! `clear` walks every master with `SCAN` (a cluster has no global
//! keyspace) and removes each key where it lives. Blocking stream reads go
//! through cluster connections of their own ([`Readers`]).

use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, RedisError};

use super::StoreError;
use super::redis::{SCAN_COUNT, scan_pattern};
use super::{Connected, Gate, MAX_BLOCK, Readers};

/// A Redis Cluster.
pub struct Cluster {
    client: ClusterClient,
    connection: tokio::sync::Mutex<Option<ClusterConnection>>,
    timeout: Duration,
    /// The same cluster, for blocking reads: a longer response timeout.
    reader_client: ClusterClient,
    readers: Readers<ClusterConnection>,
    gate: Gate,
}

impl Cluster {
    /// The cluster that `nodes` (redis:// URLs) belong to, its calls
    /// passing `gate`; connects on first use.
    pub fn new(nodes: &[String], timeout: Duration, gate: Gate) -> Result<Self, RedisError> {
        let client = |response_timeout| {
            ClusterClient::builder(nodes.to_vec())
                .connection_timeout(timeout)
                .response_timeout(response_timeout)
                .retries(1)
                .build()
        };
        Ok(Self {
            client: client(timeout)?,
            connection: tokio::sync::Mutex::default(),
            timeout,
            reader_client: client(timeout + MAX_BLOCK)?,
            readers: Readers::default(),
            gate,
        })
    }

    /// The masters' addresses, from `CLUSTER NODES`.
    async fn masters(&self, connection: &mut ClusterConnection) -> Result<Vec<(String, u16)>, StoreError> {
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(connection).await?;
        Ok(masters(&nodes))
    }
}

/// The addresses of the masters that `CLUSTER NODES` lists as not failed.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                return None;
            }
            // ip:port@cport[,hostname]
            let address = fields.get(1)?.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

#[async_trait::async_trait]
impl Connected for Cluster {
    type Connection = ClusterConnection;

    // Made on first use, then shared (it multiplexes).
    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(self.timeout, self.client.get_async_connection())
            .await
            .map_err(|_| StoreError(format!("no cluster node answered within {:?}", self.timeout)))??;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn name(&self) -> &'static str {
        "redis-cluster"
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    async fn new_reader(&self) -> Result<ClusterConnection, StoreError> {
        tokio::time::timeout(self.timeout, self.reader_client.get_async_connection())
            .await
            .map_err(|_| StoreError(format!("no cluster node answered within {:?}", self.timeout)))?
            .map_err(StoreError::from)
    }

    fn readers(&self) -> &Readers<ClusterConnection> {
        &self.readers
    }

    async fn clear(&self, prefix: &str, containing: Option<&str>) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection().await?;
        let pattern = scan_pattern(prefix, containing);
        let mut removed = Vec::new();
        for (host, port) in self.masters(&mut connection).await? {
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT);
                let answer = connection.route_command(scan, route.clone()).await?;
                let (next, keys): (u64, Vec<String>) =
                    redis::from_redis_value(answer).map_err(|error| StoreError(error.to_string()))?;
                for key in keys.into_iter().filter(|key| super::cleared_by(key, prefix, containing)) {
                    // Each key where its slot lives.
                    let _: u64 = connection.unlink(&key).await?;
                    removed.push(key);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let every_master =
            RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, Some(ResponsePolicy::AllSucceeded)));
        connection.route_command(redis::cmd("PING"), every_master).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_come_from_cluster_nodes_without_replicas_or_failed_ones() {
        let nodes = "\
07c3 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:7001@17001,host-b master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected
e7d1 127.0.0.1:7003@17003 slave 07c3 0 1426238317239 1 connected
";
        assert_eq!(masters(nodes), [("127.0.0.1".to_string(), 7000), ("127.0.0.1".to_string(), 7001)]);
    }
}
