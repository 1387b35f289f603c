//! A real three-master Redis Cluster on loopback: three `redis-server
//! --cluster-enabled yes` joined by `redis-cli --cluster create`, nothing
//! persisted; killed on drop. Tests kill one master to see how the service
//! rides it out.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;

/// How long the cluster may take to agree on its slots.
const FORM_DEADLINE: Duration = Duration::from_secs(30);

/// A running cluster.
pub struct RedisCluster {
    /// Its masters.
    pub nodes: Vec<RedisServer>,
    _dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Starts three masters and forms the cluster; returns once every
    /// node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let dir = crate::fresh_directory();
        std::fs::create_dir_all(&dir).unwrap();
        let nodes: Vec<RedisServer> = (0..3)
            .map(|index| {
                let config = dir.join(format!("nodes-{index}.conf"));
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    config.to_str().unwrap(),
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addresses: Vec<String> =
            nodes.iter().map(|node| node.url().trim_start_matches("redis://").to_string()).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed (with redis-server)");
        assert!(status.success(), "redis-cli --cluster create failed");
        let until = Instant::now() + FORM_DEADLINE;
        while !nodes.iter().all(|node| node.command("CLUSTER INFO").contains("cluster_state:ok")) {
            assert!(Instant::now() < until, "the cluster did not form within {FORM_DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes, _dir: dir }
    }

    /// Every node's `redis://` URL, comma-separated (REDIS_CLUSTER_NODES).
    pub fn seed_nodes(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }

    /// Cached answers (`llm_response:` keys) on each master; the service's
    /// own keys (its event stream, the fleet's model) are not counted.
    pub fn answer_counts(&self) -> Vec<usize> {
        self.nodes.iter().map(RedisServer::answer_count).collect()
    }
}
