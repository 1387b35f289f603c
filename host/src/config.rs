//! Settings, from flags or the environment under the seed's variable names.
//!
//! Every field has a `--flag`, an environment variable and a default; `--help`
//! lists them. [`Config::parse_or_exit`] turns a bad value into one line
//! naming the variable and the value, and exit code 2, before anything starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

/// The seed's port.
pub const DEFAULT_PORT: u16 = 6001;
/// Listen on every interface, as the seed's container does.
pub const DEFAULT_BIND: &str = "0.0.0.0";
/// A native install talks to a local Ollama; containers set the seed's
/// `http://host.docker.internal:11434` through the environment.
pub const DEFAULT_OLLAMA_BASE_URL: &str = "http://localhost:11434";
/// The seed's model.
pub const DEFAULT_OLLAMA_MODEL: &str = "llama3:8b-instruct-q5_K_M";
/// The seed's one-hour TTL for generated responses.
pub const DEFAULT_CACHE_TTL_S: u64 = 3600;
/// The seed's bound on generations in flight to the backend.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: u32 = 10;
/// The seed's request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
/// The seed's bound on cached entries in process.
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 1000;
/// Generous for a prompt (32k characters) plus settings, small enough that a
/// flood of large bodies cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Requests in the service at once before new ones are turned away with 503.
/// Each holds a component instance slot, so this also sizes the instance pool.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;
/// Linear memory one component instance may grow to.
pub const DEFAULT_MAX_INSTANCE_MEMORY: u64 = 64 * 1024 * 1024;
/// How long in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE_S: u64 = 30;

/// All of the service's settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "llm-service",
    version,
    about = "LLM gateway: a wasmtime host serving a hot-swappable handler component"
)]
pub struct Config {
    /// The HTTP listener.
    #[command(flatten)]
    pub server: ServerConfig,
    /// The model backend.
    #[command(flatten)]
    pub backend: BackendConfig,
    /// The response cache.
    #[command(flatten)]
    pub cache: CacheConfig,
    /// The component runtime.
    #[command(flatten)]
    pub runtime: RuntimeConfig,
    /// Logging.
    #[command(flatten)]
    pub log: LogConfig,
}

/// The HTTP listener and admission control.
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    /// TCP port the service answers on (0 picks a free one).
    #[arg(long, env = "LLM_SERVICE_PORT", value_name = "LLM_SERVICE_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address the service listens on.
    #[arg(long, env = "LLM_SERVICE_BIND", value_name = "LLM_SERVICE_BIND", default_value = DEFAULT_BIND)]
    pub bind: IpAddr,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// Requests in the service at once; past it new ones get 503 with Retry-After.
    #[arg(long, env = "MAX_IN_FLIGHT", value_name = "MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,
    /// Seconds a request may take in the component before it is interrupted (504).
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "REQUEST_TIMEOUT", default_value_t = DEFAULT_REQUEST_TIMEOUT_S,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub request_timeout_s: u64,
    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_PERIOD", value_name = "SHUTDOWN_GRACE_PERIOD", default_value_t = DEFAULT_SHUTDOWN_GRACE_S)]
    pub shutdown_grace_s: u64,
}

/// The model backend (Ollama).
#[derive(Debug, Clone, Args)]
pub struct BackendConfig {
    /// Base URL of the Ollama server.
    #[arg(long, env = "OLLAMA_BASE_URL", value_name = "OLLAMA_BASE_URL", default_value = DEFAULT_OLLAMA_BASE_URL,
          value_parser = parse_base_url)]
    pub ollama_base_url: http::Uri,
    /// Model used when a request names none.
    #[arg(long, env = "OLLAMA_MODEL", value_name = "OLLAMA_MODEL", default_value = DEFAULT_OLLAMA_MODEL,
          value_parser = parse_non_empty)]
    pub ollama_model: String,
    /// Generations in flight to the backend at once.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", value_name = "MAX_CONCURRENT_REQUESTS",
          default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_requests: u32,
}

/// The response cache.
#[derive(Debug, Clone, Args)]
pub struct CacheConfig {
    /// KeyDB/Redis URL (redis://host:port/db); unset, the in-process cache serves alone.
    #[arg(long, env = "REDIS_URL", value_name = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Seconds a generated response stays cached.
    #[arg(long, env = "LLM_RESPONSE_CACHE_TTL", value_name = "LLM_RESPONSE_CACHE_TTL", default_value_t = DEFAULT_CACHE_TTL_S)]
    pub cache_ttl_s: u64,
    /// Entries kept in the in-process cache (least recently used go first).
    #[arg(long, env = "CACHE_MAX_SIZE", value_name = "CACHE_MAX_SIZE", default_value_t = DEFAULT_CACHE_MAX_SIZE)]
    pub cache_max_size: u64,
}

/// The component runtime.
#[derive(Debug, Clone, Args)]
pub struct RuntimeConfig {
    /// Handler component (.wasm) to serve instead of the built-in one.
    #[arg(long, env = "LLM_SERVICE_COMPONENT", value_name = "LLM_SERVICE_COMPONENT")]
    pub component: Option<PathBuf>,
    /// Linear memory one component instance may use, in bytes; past it the request gets 500.
    #[arg(long, env = "MAX_INSTANCE_MEMORY", value_name = "MAX_INSTANCE_MEMORY",
          default_value_t = DEFAULT_MAX_INSTANCE_MEMORY, value_parser = clap::value_parser!(u64).range(1024 * 1024..=4 << 30))]
    pub max_instance_memory: u64,
}

/// Log output.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// `text` for people, `json` (one object per line) for collectors.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// Parses flags and environment; on a bad value prints one line naming
    /// the variable and the value and exits with code 2.
    pub fn parse_or_exit() -> Self {
        match Self::try_parse() {
            Ok(config) => config,
            Err(error) if !error.use_stderr() => error.exit(), // --help, --version
            Err(error) => {
                let rendered = error.to_string();
                let line = rendered.lines().next().unwrap_or("invalid configuration");
                eprintln!("llm-service: {}", line.trim_start_matches("error: "));
                std::process::exit(2);
            }
        }
    }

    /// How long a request may run in the component.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_s)
    }

    /// How long shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_s)
    }
}

fn parse_non_empty(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(value.to_string())
}

/// An absolute http(s) URL with a host, such as `http://localhost:11434`.
fn parse_base_url(value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value.parse().map_err(|error| format!("not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("llm-service").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_seed() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.server.port, 6001);
        assert_eq!(config.cache.cache_ttl_s, 3600);
        assert_eq!(config.backend.max_concurrent_requests, 10);
        assert_eq!(config.server.request_timeout_s, 30);
        assert_eq!(config.cache.cache_max_size, 1000);
        assert_eq!(config.backend.ollama_model, "llama3:8b-instruct-q5_K_M");
    }

    #[test]
    fn a_bad_port_names_the_variable_and_the_value() {
        let error = parse(&["--port", "abc"]).unwrap_err().to_string();
        assert!(error.contains("LLM_SERVICE_PORT"), "{error}");
        assert!(error.contains("'abc'"), "{error}");
    }

    #[test]
    fn base_url_needs_a_scheme_and_a_host() {
        assert!(parse_base_url("http://localhost:11434").is_ok());
        assert_eq!(parse_base_url("localhost:11434").unwrap_err(), "must start with http:// or https://");
        assert!(parse_base_url("ftp://x").is_err());
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        assert!(parse(&["--request-timeout-s", "0"]).is_err());
    }
}
