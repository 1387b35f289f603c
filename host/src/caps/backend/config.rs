//! Settings of the backend capability: where the model server is, how the
//! pooled client behaves (the seed's OLLAMA_CONNECTION_POOL) and how many
//! generations may be in flight or queued.

use std::path::PathBuf;

use clap::Args;

use super::pool::file;
use super::pool::node::NodeSpec;
use super::protocol::Protocol;

/// A native install talks to a local Ollama; containers set the seed's
/// `http://host.docker.internal:11434` through the environment.
pub const DEFAULT_OLLAMA_BASE_URL: &str = "http://localhost:11434";
/// The seed's model.
pub const DEFAULT_OLLAMA_MODEL: &str = "llama3:8b-instruct-q5_K_M";
/// The seed's bound on generations in flight to the backend.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 10;
/// Generations that may wait for a backend slot; past it → 503.
pub const DEFAULT_MAX_QUEUED_GENERATIONS: u32 = 256;
/// The seed's OLLAMA_CONNECTION_POOL.max_connections: idle keep-alive
/// connections kept open to the backend.
pub const DEFAULT_MAX_CONNECTIONS: usize = 5;
/// The seed's OLLAMA_CONNECTION_POOL.connection_timeout.
pub const DEFAULT_CONNECT_TIMEOUT_S: u64 = 10;
/// The seed's OLLAMA_CONNECTION_POOL.read_timeout: to the first byte of the
/// response and between any two chunks of its body.
pub const DEFAULT_READ_TIMEOUT_S: u64 = 30;
/// The seed's OLLAMA_CONNECTION_POOL.retry_attempts: retries after the first try.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// The seed's "every 30 seconds" for Ollama and cache checks.
pub const DEFAULT_HEALTH_CHECK_INTERVAL_S: f64 = 30.0;
/// A version or model-list call that takes this long means trouble.
pub const DEFAULT_SLOW_THRESHOLD_MS: u64 = 2000;

/// The model backend.
#[derive(Debug, Clone, Args)]
pub struct BackendConfig {
    /// Protocol of the model server: `ollama` or `openai` (OpenAI-compatible).
    #[arg(long, env = "BACKEND_KIND", value_name = "BACKEND_KIND", default_value = "ollama")]
    pub backend_kind: Protocol,
    /// Base URL of the model server, or several, comma-separated; unset, OLLAMA_BASE_URL.
    #[arg(long, env = "BACKEND_BASE_URL", value_name = "BACKEND_BASE_URL", value_parser = parse_base_urls)]
    pub backend_base_url: Option<BaseUrls>,
    /// Base URL of the Ollama server, or several, comma-separated (one slot each).
    #[arg(long, env = "OLLAMA_BASE_URL", value_name = "OLLAMA_BASE_URL", default_value = DEFAULT_OLLAMA_BASE_URL,
          value_parser = parse_base_urls)]
    pub ollama_base_url: BaseUrls,
    /// A TOML file of model server nodes (slots, weight, priority, protocol, models); replaces the URL list, re-read on change.
    #[arg(long, env = "BACKENDS_FILE", value_name = "BACKENDS_FILE")]
    pub backends_file: Option<PathBuf>,
    /// Model used when a request names none.
    #[arg(long, env = "OLLAMA_MODEL", value_name = "OLLAMA_MODEL", default_value = DEFAULT_OLLAMA_MODEL,
          value_parser = parse_non_empty)]
    pub ollama_model: String,
    /// Generations in flight to the backend at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", value_name = "MAX_CONCURRENT_REQUESTS",
          default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_requests: u32,
    /// Generations waiting for a backend slot; past it new ones get 503.
    #[arg(long, env = "MAX_QUEUED_GENERATIONS", value_name = "MAX_QUEUED_GENERATIONS",
          default_value_t = DEFAULT_MAX_QUEUED_GENERATIONS)]
    pub max_queued_generations: u32,
    /// Idle keep-alive connections kept to the backend (the seed's max_connections).
    #[arg(long, env = "OLLAMA_MAX_CONNECTIONS", value_name = "OLLAMA_MAX_CONNECTIONS",
          default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds to open a connection to the backend.
    #[arg(long, env = "OLLAMA_CONNECTION_TIMEOUT", value_name = "OLLAMA_CONNECTION_TIMEOUT",
          default_value_t = DEFAULT_CONNECT_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout_s: u64,
    /// Seconds to the first response byte, and between body chunks.
    #[arg(long, env = "OLLAMA_READ_TIMEOUT", value_name = "OLLAMA_READ_TIMEOUT",
          default_value_t = DEFAULT_READ_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub read_timeout_s: u64,
    /// Seconds between background checks of the backend and the cache (fractions allowed).
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", value_name = "HEALTH_CHECK_INTERVAL",
          default_value_t = DEFAULT_HEALTH_CHECK_INTERVAL_S, value_parser = parse_interval)]
    pub health_check_interval_s: f64,
    /// Milliseconds past which a backend check counts as slow (health: degraded).
    #[arg(long, env = "BACKEND_SLOW_THRESHOLD_MS", value_name = "BACKEND_SLOW_THRESHOLD_MS",
          default_value_t = DEFAULT_SLOW_THRESHOLD_MS)]
    pub slow_threshold_ms: u64,
    /// Retries after a connection error or a 502/503/504 from the backend.
    #[arg(long, env = "OLLAMA_RETRY_ATTEMPTS", value_name = "OLLAMA_RETRY_ATTEMPTS",
          default_value_t = DEFAULT_RETRY_ATTEMPTS, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retry_attempts: u32,
    /// Pass Ollama's model management (/api/pull, push, create, copy, delete, blobs)
    /// through to an Ollama backend; off, those answer 403.
    #[arg(long, env = "ALLOW_MODEL_MANAGEMENT", value_name = "ALLOW_MODEL_MANAGEMENT", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_model_management: bool,
}

/// The origin a component addresses when the host routes its calls over
/// several nodes: it never resolves (`.invalid`), the host picks the node.
pub const POOL_BASE_URL: &str = "http://backend-pool.invalid";

/// The configured nodes, and BACKENDS_FILE's text if they came from it.
pub type ConfiguredNodes = (Vec<NodeSpec>, Option<String>);

/// One or more base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrls(Vec<http::Uri>);

impl BackendConfig {
    /// The URL generations go to (the first of several).
    pub fn base_url(&self) -> &http::Uri {
        &self.base_urls()[0]
    }

    fn base_urls(&self) -> &[http::Uri] {
        &self.backend_base_url.as_ref().unwrap_or(&self.ollama_base_url).0
    }

    /// Whether calls are routed over several nodes (BACKENDS_FILE, or more
    /// than one URL); one URL is the single backend of old, untouched.
    pub fn pooled(&self) -> bool {
        self.backends_file.is_some() || self.base_urls().len() > 1
    }

    /// The base URL the component addresses.
    pub fn component_base_url(&self) -> String {
        if self.pooled() {
            return POOL_BASE_URL.to_string();
        }
        self.base_url().to_string().trim_end_matches('/').to_string()
    }

    /// The nodes, when pooled: from BACKENDS_FILE (with the text read, to
    /// notice changes), else one per URL with BACKEND_KIND's protocol.
    pub fn nodes(&self) -> Result<Option<ConfiguredNodes>, String> {
        if let Some(path) = &self.backends_file {
            let (specs, text) = file::read(path)?;
            return Ok(Some((specs, Some(text))));
        }
        if !self.pooled() {
            return Ok(None);
        }
        let protocol = self.backend_kind;
        let specs = self
            .base_urls()
            .iter()
            .map(|url| NodeSpec {
                name: String::new(),
                url: url.to_string(),
                slots: 1,
                weight: 1,
                priority: 0,
                protocol,
                models: None,
            })
            .collect();
        Ok(Some((specs, None)))
    }
}

/// Comma-separated base URLs, each as [`parse_base_url`] wants it.
fn parse_base_urls(value: &str) -> Result<BaseUrls, String> {
    let urls = value
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| parse_base_url(url).map_err(|error| format!("{url}: {error}")))
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("names no URL".into());
    }
    Ok(BaseUrls(urls))
}

fn parse_interval(value: &str) -> Result<f64, String> {
    let seconds: f64 = value.trim().parse().map_err(|_| "not a number of seconds".to_string())?;
    if !(seconds.is_finite() && (0.05..=86_400.0).contains(&seconds)) {
        return Err("must be between 0.05 and 86400 seconds".into());
    }
    Ok(seconds)
}

fn parse_non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value.to_string())
}

/// An absolute `http://` URL with a host, such as `http://localhost:11434`.
/// TLS to the backend is not offered: it runs beside the service.
fn parse_base_url(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value.parse().map_err(|error| format!("not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err("https backends are not supported; use http://".into()),
        _ => return Err("must start with http://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_make_a_pool_and_one_does_not() {
        let urls = parse_base_urls("http://a:1, http://b:2").unwrap();
        assert_eq!(urls.0.len(), 2);
        assert!(parse_base_urls("http://a:1,ftp://b").unwrap_err().starts_with("ftp://b: "));
        assert!(parse_base_urls(" , ").is_err());
    }

    #[test]
    fn base_url_needs_http_and_a_host() {
        assert!(parse_base_url("http://localhost:11434").is_ok());
        assert_eq!(parse_base_url("localhost:11434").unwrap_err(), "must start with http://");
        assert!(parse_base_url("https://x").unwrap_err().contains("not supported"));
        assert!(parse_base_url("ftp://x").is_err());
    }
}
