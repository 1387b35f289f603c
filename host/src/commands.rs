//! The binary's subcommands as clap parses them (what [`crate::cli`] runs):
//! a leaf, so the configuration can name them without importing the code
//! that runs them.

use std::path::PathBuf;

use clap::Subcommand;

/// What the binary does besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask the running service whether it is live (`/livez`) or ready
    /// (`/readyz`); exit 0 if so, 1 if not. For container health checks:
    /// the image has no shell tools.
    Probe {
        /// Ask `/readyz` (can take requests now) instead of `/livez` (is serving at all).
        #[arg(long)]
        ready: bool,
        /// The service's base URL (default: http://127.0.0.1:LLM_SERVICE_PORT).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Manage the handler component of a running service through its admin API.
    Component {
        /// What to do.
        #[command(subcommand)]
        action: ComponentAction,
        /// The admin API's base URL (default: http://ADMIN_BIND:ADMIN_PORT).
        #[arg(long, env = "ADMIN_URL", value_name = "ADMIN_URL")]
        admin_url: Option<String>,
    },
    /// Manage the prompt plugins of a running service through its admin API.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        action: PluginAction,
        /// The admin API's base URL (default: http://ADMIN_BIND:ADMIN_PORT).
        #[arg(long, env = "ADMIN_URL", value_name = "ADMIN_URL")]
        admin_url: Option<String>,
    },
    /// Manage the client keys of a running service through its admin API.
    Key {
        /// What to do.
        #[command(subcommand)]
        action: KeyAction,
        /// The admin API's base URL (default: http://ADMIN_BIND:ADMIN_PORT).
        #[arg(long, env = "ADMIN_URL", value_name = "ADMIN_URL")]
        admin_url: Option<String>,
    },
}

/// Admin API calls about client keys.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyAction {
    /// Make a key for TENANT; its secret is printed this once.
    Create {
        /// The tenant the key belongs to (its cache namespace, unless --cache-namespace).
        #[arg(long)]
        tenant: String,
        /// A name for people (default: the tenant).
        #[arg(long)]
        name: Option<String>,
        /// The models it may use, comma-separated (default: any).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Unix seconds after which it is refused.
        #[arg(long)]
        expires_at: Option<u64>,
        /// A cache namespace shared with other tenants' keys.
        #[arg(long)]
        cache_namespace: Option<String>,
    },
    /// Show every key (never a secret).
    List,
    /// Revoke the key with ID.
    Revoke {
        /// The key's id (`key_...`).
        id: String,
    },
}

/// Admin API calls about plugins.
#[derive(Debug, Clone, Subcommand)]
pub enum PluginAction {
    /// Upload FILE as a plugin (checked, then serving; replaces a plugin of the same name).
    Push {
        /// The plugin .wasm.
        file: PathBuf,
    },
    /// Show the loaded plugins.
    List,
    /// Unload the plugin called NAME.
    Remove {
        /// The plugin's name.
        name: String,
    },
}

/// Admin API calls about the handler.
#[derive(Debug, Clone, Subcommand)]
pub enum ComponentAction {
    /// Upload FILE as the new handler (compiled, checked, swapped in).
    Push {
        /// The handler .wasm.
        file: PathBuf,
    },
    /// Show the active handler version and the kept previous ones.
    List,
    /// Serve the previous version again, or the kept one with this sha256 (or prefix).
    Rollback {
        /// The version to return to.
        sha256: Option<String>,
    },
    /// Upload FILE as a canary serving PERCENT of requests beside the
    /// handler; without FILE, change the serving canary's share.
    Canary {
        /// The candidate handler .wasm.
        file: Option<PathBuf>,
        /// Its share of requests, 0 to 100.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
        percent: u32,
    },
    /// Make the canary the handler for every request.
    Promote,
    /// Stop the canary: every request goes to the handler again.
    DropCanary,
}
