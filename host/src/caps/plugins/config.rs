//! Settings of prompt plugins: where they are loaded from and the limits
//! every plugin instance runs under.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// A prompt transformation is string work: a quarter second is far beyond
/// what a sane plugin needs and short enough that a looping one costs the
/// client little.
pub const DEFAULT_PLUGIN_TIMEOUT_MS: u64 = 250;
/// Linear memory one plugin instance may use.
pub const DEFAULT_PLUGIN_MAX_MEMORY: u64 = 16 * 1024 * 1024;

/// Prompt plugins.
#[derive(Debug, Clone, Args)]
pub struct PluginConfig {
    /// Directory of prompt plugins (one .wasm each), loaded at start and reloaded on change.
    #[arg(long, env = "PLUGINS_DIR", value_name = "PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Milliseconds one plugin call may run (it is stopped after, and the request answered 502).
    #[arg(long, env = "PLUGIN_TIMEOUT_MS", value_name = "PLUGIN_TIMEOUT_MS", default_value_t = DEFAULT_PLUGIN_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub plugin_timeout_ms: u64,
    /// Bytes of linear memory one plugin instance may grow to.
    #[arg(long, env = "PLUGIN_MAX_MEMORY", value_name = "PLUGIN_MAX_MEMORY", default_value_t = DEFAULT_PLUGIN_MAX_MEMORY,
          value_parser = clap::value_parser!(u64).range(1024 * 1024..=1 << 30))]
    pub plugin_max_memory: u64,
}

impl PluginConfig {
    /// The limits of one plugin call.
    pub fn limits(&self) -> PluginLimits {
        PluginLimits {
            timeout: Duration::from_millis(self.plugin_timeout_ms),
            max_memory: usize::try_from(self.plugin_max_memory).unwrap_or(usize::MAX),
        }
    }
}

/// What every plugin instance runs under.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    /// Longest one call may run.
    pub timeout: Duration,
    /// Linear memory one instance may grow to.
    pub max_memory: usize,
}
