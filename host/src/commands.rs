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

/// A key's limits on the command line (none given: no limit).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeyLimits {
    /// Requests per minute, across every replica.
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens generated per minute, across every replica.
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Tokens generated per UTC day, across every replica.
    #[arg(long)]
    pub daily_tokens: Option<u64>,
}

impl KeyLimits {
    /// The limits as the admin API takes them, if any is given.
    pub fn json(&self) -> Option<serde_json::Value> {
        let Self { rpm, tpm, daily_tokens } = self;
        (rpm.is_some() || tpm.is_some() || daily_tokens.is_some())
            .then(|| serde_json::json!({"rpm": rpm, "tpm": tpm, "daily_tokens": daily_tokens}))
    }
}

/// Unix seconds, or a time from now: a number with `s`, `m`, `h` or `d`.
fn parse_expiry(text: &str) -> Result<u64, String> {
    if let Ok(at) = text.parse::<u64>() {
        return Ok(at);
    }
    let unit = match text.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err(format!("{text:?} is neither unix seconds nor a time like 90m, 12h or 30d")),
    };
    let count: u64 =
        text[..text.len() - 1].parse().map_err(|_| format!("{text:?}: expected a number before the unit"))?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    Ok(now + count * unit)
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
        /// When it stops working: unix seconds, or a time from now (`90m`, `12h`, `30d`).
        #[arg(long, alias = "expires-at", value_parser = parse_expiry)]
        expires: Option<u64>,
        /// A cache namespace shared with other tenants' keys.
        #[arg(long)]
        cache_namespace: Option<String>,
        /// Its limits (none given: no limit).
        #[command(flatten)]
        limits: KeyLimits,
    },
    /// Show every key with its use today (never a secret).
    List,
    /// Change the key with ID: what is given changes, the rest stays.
    Change {
        /// The key's id (`key_...`).
        id: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// The models it may use, comma-separated.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// When it stops working: unix seconds, or a time from now (`90m`, `12h`, `30d`).
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<u64>,
        /// New limits: together they replace the key's (a limit not given is then none).
        #[command(flatten)]
        limits: KeyLimits,
    },
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
