//! Client keys' settings.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Whether clients must present a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMode {
    /// Keys are not read: every client is the one default tenant (the seed's use).
    Off,
    /// A request without a key is the default tenant; a key presented must be valid.
    Optional,
    /// Every request but the probes, `/health` and `/` needs a valid key (401 otherwise).
    Required,
}

impl std::fmt::Display for KeyMode {
    /// Its name as `CLIENT_KEYS` spells it.
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = self.to_possible_value().map(|value| value.get_name().to_string()).unwrap_or_default();
        out.write_str(&name)
    }
}

/// Where keys live and whether they are asked for.
#[derive(Debug, Clone, Args)]
pub struct KeyConfig {
    /// Client keys: `off` (the seed's open service), `optional` (a key presented must be valid) or `required` (401 without one). Keys are managed with `llm-service key` or the admin API.
    #[arg(long, env = "CLIENT_KEYS", value_name = "CLIENT_KEYS", default_value = "off")]
    pub client_keys: KeyMode,
    /// The file the keys are kept in (only their SHA-256, mode 0600), so they survive a restart (default: $XDG_DATA_HOME or ~/.local/share, /llm-service/keys.json).
    #[arg(long, env = "CLIENT_KEYS_FILE", value_name = "CLIENT_KEYS_FILE")]
    pub client_keys_file: Option<PathBuf>,
}

impl KeyConfig {
    /// The keys' file.
    pub fn file(&self) -> Option<PathBuf> {
        if let Some(file) = &self.client_keys_file {
            return Some(file.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))?;
        Some(base.join("llm-service").join("keys.json"))
    }
}
