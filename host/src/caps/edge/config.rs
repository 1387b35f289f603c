//! Settings of the edge tier: how many bytes of replays it keeps.

use clap::Args;

/// Enough for tens of thousands of typical answers (a few KiB each, their
/// template a little more), small beside the shipped memory limits.
pub const DEFAULT_EDGE_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The edge tier.
#[derive(Debug, Clone, Args)]
pub struct EdgeConfig {
    /// Bytes of replays the host keeps to answer exact repeats without entering the handler; 0 turns the edge tier off.
    #[arg(long, env = "EDGE_CACHE_MAX_BYTES", value_name = "EDGE_CACHE_MAX_BYTES",
          default_value_t = DEFAULT_EDGE_CACHE_MAX_BYTES)]
    pub edge_cache_max_bytes: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self { edge_cache_max_bytes: DEFAULT_EDGE_CACHE_MAX_BYTES }
    }
}
