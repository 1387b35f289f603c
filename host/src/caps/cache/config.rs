//! Settings of the response cache: the in-process tier's size, KeyDB's
//! address and timeouts, and the TTL policy handed to the handler.

use std::time::Duration;

use clap::Args;

/// The seed's one-hour TTL for generated responses.
pub const DEFAULT_CACHE_TTL_S: u64 = 3600;
/// The seed's bound on cached entries in process.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 1000;
/// The in-process tier's bound in bytes: with the edge tier's 64 MiB and
/// the runtime, well inside the shipped 1 GiB memory limit.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A generated answer is a few KiB; this keeps one runaway value from
/// filling the cache.
pub const DEFAULT_CACHE_MAX_VALUE_BYTES: u64 = 1024 * 1024;
/// KeyDB answers in well under a millisecond on a LAN; past this a cache
/// call counts as failed and the request goes on without the cache.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 500;

/// The response cache.
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// KeyDB/Redis URL (redis://host:port/db); unset, the in-process cache serves alone.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<String>,
    /// Seed nodes of a Redis Cluster as the shared tier (comma-separated redis:// URLs), instead of REDIS_URL.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_name = "REDIS_CLUSTER_NODES", value_parser = parse_cluster_nodes,
          conflicts_with = "redis_url")]
    pub redis_cluster_nodes: Option<ClusterNodes>,
    /// Seconds a generated response stays cached.
    #[arg(long, env = "LLM_RESPONSE_CACHE_TTL", value_name = "LLM_RESPONSE_CACHE_TTL", default_value_t = DEFAULT_CACHE_TTL_S,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub cache_ttl_s: u64,
    /// Entries kept in the in-process cache (least recently used go first); 0 turns it off.
    #[arg(long, env = "CACHE_MAX_SIZE", value_name = "CACHE_MAX_SIZE", default_value_t = DEFAULT_CACHE_MAX_SIZE)]
    pub cache_max_size: u64,
    /// Bytes (keys and values) the in-process cache holds at most; 0 turns it off.
    #[arg(long, env = "CACHE_MAX_BYTES", value_name = "CACHE_MAX_BYTES", default_value_t = DEFAULT_CACHE_MAX_BYTES)]
    pub cache_max_bytes: u64,
    /// Seconds past its TTL an answer is kept and served (marked stale) when the backend fails; 0 = off.
    #[arg(long, env = "STALE_IF_ERROR", value_name = "STALE_IF_ERROR", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub stale_if_error_s: u64,
    /// Largest value stored, in bytes.
    #[arg(long, env = "CACHE_MAX_VALUE_BYTES", value_name = "CACHE_MAX_VALUE_BYTES",
          default_value_t = DEFAULT_CACHE_MAX_VALUE_BYTES)]
    pub cache_max_value_bytes: u64,
    /// Milliseconds to connect to KeyDB, and for each of its answers.
    #[arg(long, env = "REDIS_TIMEOUT_MS", value_name = "REDIS_TIMEOUT_MS", default_value_t = DEFAULT_REDIS_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub redis_timeout_ms: u64,
}

impl CacheConfig {
    /// Timeout for KeyDB calls.
    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// The handler's share: its TTL policy, as its environment.
    pub fn guest_environment(&self) -> Vec<(String, String)> {
        vec![
            ("LLM_RESPONSE_CACHE_TTL".into(), self.cache_ttl_s.to_string()),
            ("STALE_IF_ERROR".into(), self.stale_if_error_s.to_string()),
        ]
    }
}

/// A Redis Cluster's seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodes(pub Vec<String>);

/// Comma-separated redis:// URLs, at least one.
fn parse_cluster_nodes(value: &str) -> Result<ClusterNodes, String> {
    let nodes: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(parse_redis_url)
        .collect::<Result<_, _>>()?;
    if nodes.is_empty() {
        return Err("names no node".into());
    }
    Ok(ClusterNodes(nodes))
}

fn parse_redis_url(value: &str) -> Result<String, String> {
    redis::Client::open(value).map_err(|error| format!("not a Redis URL: {error}"))?;
    Ok(value.to_string())
}
