//! Settings, from flags or the environment under the seed's variable names.
//!
//! Every field has a `--flag`, an environment variable and a default; `--help`
//! lists them. [`Config::parse_or_exit`] turns a bad value into one line
//! naming the variable and the value, and exit code 2, before anything starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

use crate::bindings::llm_service::host::runtime::{DefaultSettings, HandlerSettings};

pub use crate::caps::backend::config::BackendConfig;
pub use crate::caps::cache::config::CacheConfig;
pub use crate::caps::plugins::config::PluginConfig;
pub use crate::handler_settings::GenerationConfig;
pub use crate::rollout::config::RolloutConfig;

/// The shortest admin token accepted: a guessable token guards pushing code.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The seed's port.
pub const DEFAULT_PORT: u16 = 6001;
/// Listen on every interface, as the seed's container does.
pub const DEFAULT_BIND: &str = "0.0.0.0";
/// The seed's request timeout.
pub const DEFAULT_REQUEST_TIMEOUT_S: u64 = 30;
/// Generous for a prompt (32k characters) plus settings, small enough that a
/// flood of large bodies cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Requests in the service at once before new ones are turned away with 503.
/// Each holds a component instance slot, so this also sizes the instance pool.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;
/// Linear memory one component instance may grow to.
pub const DEFAULT_MAX_INSTANCE_MEMORY: u64 = 64 * 1024 * 1024;
/// The admin API's port (the service's plus one).
pub const DEFAULT_ADMIN_PORT: u16 = 6002;
/// The admin API listens on loopback only unless told otherwise.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1";
/// Previous handler versions kept for rollback.
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// Components are a few hundred KiB; this leaves room for big ones.
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// Connections open at once on the service port: far more than a fleet of
/// bots keeps alive, far fewer than the descriptors a process may hold.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
/// Time to send a request head, and to start the next one on an idle
/// kept-alive connection: long for a real client, short for a slowloris.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 15_000;
/// Time to send a request body: a megabyte takes well under a second on
/// any link a gateway's clients use.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
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
    /// The handler's generation policy.
    #[command(flatten)]
    pub generation: GenerationConfig,
    /// The response cache.
    #[command(flatten)]
    pub cache: CacheConfig,
    /// The edge tier in front of the handler.
    #[command(flatten)]
    pub edge: crate::caps::edge::EdgeConfig,
    /// The component runtime.
    #[command(flatten)]
    pub runtime: RuntimeConfig,
    /// Logging.
    #[command(flatten)]
    pub log: LogConfig,
    /// Client keys and tenants.
    #[command(flatten)]
    pub keys: crate::keys::config::KeyConfig,
    /// Distributed traces (OpenTelemetry).
    #[command(flatten)]
    pub traces: crate::traces::config::TraceConfig,
    /// Prompt plugins.
    #[command(flatten)]
    pub plugins: PluginConfig,
    /// The operator API.
    #[command(flatten)]
    pub admin: AdminConfig,
    /// Canaries, model splits and quality checks.
    #[command(flatten)]
    pub rollout: RolloutConfig,
    /// Instead of serving: a command for a running service.
    #[command(subcommand)]
    pub command: Option<crate::commands::Command>,
}

/// The operator API and the versions it manages.
#[derive(Debug, Clone, Args)]
pub struct AdminConfig {
    /// Bearer token for the admin API (at least 16 characters); unset, the admin API is off.
    #[arg(long, env = "ADMIN_TOKEN", value_name = "ADMIN_TOKEN", hide_env_values = true, value_parser = parse_admin_token)]
    pub admin_token: Option<String>,
    /// A file holding the admin token (a Docker or Kubernetes secret), instead of ADMIN_TOKEN.
    #[arg(long, env = "ADMIN_TOKEN_FILE", value_name = "ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,
    /// TCP port of the admin API.
    #[arg(long, env = "ADMIN_PORT", value_name = "ADMIN_PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,
    /// Address of the admin API (loopback unless you mean otherwise).
    #[arg(long, env = "ADMIN_BIND", value_name = "ADMIN_BIND", default_value = DEFAULT_ADMIN_BIND)]
    pub admin_bind: IpAddr,
    /// Previous handler versions kept for rollback.
    #[arg(long, env = "KEEP_VERSIONS", value_name = "KEEP_VERSIONS", default_value_t = DEFAULT_KEEP_VERSIONS)]
    pub keep_versions: usize,
    /// Largest component upload, in bytes.
    #[arg(long, env = "MAX_COMPONENT_BYTES", value_name = "MAX_COMPONENT_BYTES",
          default_value_t = DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_component_bytes: u64,
    /// Directory watched for a new or changed handler.wasm (watch mode); unset, no watching.
    #[arg(long, env = "COMPONENTS_DIR", value_name = "COMPONENTS_DIR")]
    pub components_dir: Option<PathBuf>,
    /// Directory of compiled components, keyed by sha256 (default: $XDG_CACHE_HOME or ~/.cache, /llm-service/compiled).
    #[arg(long, env = "COMPILED_CACHE_DIR", value_name = "COMPILED_CACHE_DIR")]
    pub compiled_cache_dir: Option<PathBuf>,
    /// A file holding the key (32 bytes or more) that seals handlers and plugins shared through the store; unset, none are shared.
    #[arg(long, env = "FLEET_SIGNING_KEY_FILE", value_name = "FLEET_SIGNING_KEY_FILE")]
    pub fleet_signing_key_file: Option<PathBuf>,
}

impl AdminConfig {
    /// The seal of handlers and plugins shared through the store, from
    /// FLEET_SIGNING_KEY_FILE; `None` without one.
    pub fn fleet_seal(&self) -> Result<Option<std::sync::Arc<crate::fleet::seal::FleetSeal>>, String> {
        let Some(path) = &self.fleet_signing_key_file else { return Ok(None) };
        crate::fleet::seal::FleetSeal::from_file(path).map(|seal| Some(std::sync::Arc::new(seal)))
    }

    /// Reads ADMIN_TOKEN_FILE, if set, into `admin_token`, with the same
    /// rule as ADMIN_TOKEN. One trailing newline (as `echo` writes) is not
    /// part of the token.
    pub fn read_token_file(&mut self) -> Result<(), String> {
        let Some(path) = &self.admin_token_file else { return Ok(()) };
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("ADMIN_TOKEN_FILE {}: {error}", path.display()))?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        self.admin_token = Some(
            parse_admin_token(token)
                .map_err(|error| format!("ADMIN_TOKEN_FILE {}: {error}", path.display()))?,
        );
        Ok(())
    }

    /// The compiled-component directory: the flag, else the user's cache dir.
    pub fn compiled_cache_dir(&self) -> Option<PathBuf> {
        self.compiled_cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
            Some(base.join("llm-service").join("compiled"))
        })
    }
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
    /// Connections open at once (kept below the open-files limit); when full, the oldest that has sent nothing is shed, else new ones are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_client_connections: u32,
    /// Milliseconds to send a request head, and to start the next one on an idle connection; then it is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", value_name = "HEADER_READ_TIMEOUT_MS",
          default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub header_read_timeout_ms: u64,
    /// Milliseconds to send a request body (408 past it); no admission slot is held meanwhile.
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", value_name = "BODY_READ_TIMEOUT_MS",
          default_value_t = DEFAULT_BODY_READ_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub body_read_timeout_ms: u64,
    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT; past it, streams still reading from the backend end with their dialect's error.
    #[arg(long, env = "SHUTDOWN_GRACE_PERIOD", value_name = "SHUTDOWN_GRACE_PERIOD", default_value_t = DEFAULT_SHUTDOWN_GRACE_S)]
    pub shutdown_grace_s: u64,
    /// Origins (comma-separated, or *) whose pages may POST /model and /cache/clear; others are refused (403).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_name = "CORS_ALLOWED_ORIGINS", default_value = "")]
    pub cors_allowed_origins: String,
}

/// An admin token, refused when shorter than [`MIN_ADMIN_TOKEN_CHARS`]
/// (an empty one would start an admin API nobody can use).
fn parse_admin_token(value: &str) -> Result<String, String> {
    let chars = value.chars().count();
    if chars < MIN_ADMIN_TOKEN_CHARS {
        return Err(format!(
            "an admin token needs at least {MIN_ADMIN_TOKEN_CHARS} characters, this one has {chars} (try: openssl rand -hex 24)"
        ));
    }
    // A token nobody can send in an Authorization header would start an
    // admin API nobody can use.
    if !value.chars().all(|char| char.is_ascii_graphic()) {
        return Err(
            "an admin token must be printable ASCII without spaces (try: openssl rand -hex 24)".into()
        );
    }
    Ok(value.to_string())
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
    /// Count each request's calls from the handler into the host and log them
    /// (target `llm_service::host_calls`, level debug): a measurement aid, off by default.
    #[arg(long, env = "COUNT_HOST_CALLS", value_name = "COUNT_HOST_CALLS", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub count_host_calls: bool,
    /// Write a perf map of the handler's compiled code (`/tmp/perf-PID.map`) so `perf report` names its
    /// functions: a measurement aid, off by default.
    #[arg(long, env = "GUEST_PERF_MAP", value_name = "GUEST_PERF_MAP", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub guest_perf_map: bool,
}

/// Log output.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// `text` for people, `json` (one object per line) for collectors.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Put prompt text into the per-generation log lines (off: prompts are never logged).
    #[arg(long, env = "LOG_PROMPTS", value_name = "LOG_PROMPTS", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub log_prompts: bool,
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
        let mut config = match Self::try_parse() {
            Ok(config) => config,
            Err(error) if !error.use_stderr() => error.exit(), // --help, --version
            Err(error) => {
                let rendered = error.to_string();
                let line = rendered.lines().next().unwrap_or("invalid configuration");
                eprintln!("llm-service: {}", line.trim_start_matches("error: "));
                std::process::exit(2);
            }
        };
        if let Err(message) = config.admin.read_token_file() {
            eprintln!("llm-service: {message}");
            std::process::exit(2);
        }
        config
    }

    /// The component's environment: its share of the configuration.
    pub fn guest_environment(&self) -> Vec<(String, String)> {
        let mut environment = vec![
            ("BACKEND_KIND".to_string(), self.backend.backend_kind.as_str().to_string()),
            ("BACKEND_BASE_URL".to_string(), self.backend.component_base_url()),
            ("REQUEST_TIMEOUT".to_string(), self.server.request_timeout_s.to_string()),
            ("LOG_PROMPTS".to_string(), self.log.log_prompts.to_string()),
            // Read by the handler's Ollama dialect (not in the typed record,
            // which cannot grow a field without breaking older handlers).
            ("ALLOW_MODEL_MANAGEMENT".to_string(), self.backend.allow_model_management.to_string()),
            // Read by the handler's cross-origin guard, likewise.
            ("CORS_ALLOWED_ORIGINS".to_string(), self.server.cors_allowed_origins.clone()),
        ];
        environment.extend(self.generation.guest_environment());
        environment.extend(self.cache.guest_environment());
        environment.extend(self.rollout.guest_environment());
        environment
    }

    /// The record `runtime.handler-settings` answers.
    pub fn handler_settings(&self) -> HandlerSettings {
        let config = self;
        let generation = &config.generation;
        HandlerSettings {
            backend_kind: config.backend.backend_kind.for_handler(),
            backend_url: config.backend.component_base_url(),
            defaults: DefaultSettings {
                temperature: generation.default_temperature,
                max_tokens: generation.default_max_tokens,
                top_p: generation.default_top_p,
                top_k: generation.default_top_k,
                repeat_penalty: generation.default_repeat_penalty,
                stop: generation.stop(),
            },
            max_prompt_chars: generation.max_prompt_chars,
            max_batch: generation.max_batch,
            fallback_models: generation.fallback_models(),
            cache_ttl_s: config.cache.cache_ttl_s,
            stale_if_error_s: config.cache.stale_if_error_s,
            log_prompts: config.log.log_prompts,
        }
    }

    /// How long a request may run in the component.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_s)
    }

    /// The service port's connection limits.
    pub fn connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: self.server.max_client_connections as usize,
            header_read_timeout: Duration::from_millis(self.server.header_read_timeout_ms),
        }
        .within_descriptor_limit()
    }

    /// The admin port's: the same timeouts, a small cap of its own.
    pub fn admin_connection_limits(&self) -> crate::listener::ConnectionLimits {
        crate::listener::ConnectionLimits {
            max_connections: crate::listener::ADMIN_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_millis(self.server.header_read_timeout_ms),
        }
    }

    /// How long shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_s)
    }
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
    fn every_flag_and_variable_is_unique() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }

    #[test]
    fn the_admin_token_file_is_read_without_its_newline_and_checked() {
        let dir = std::env::temp_dir().join(format!("llm-service-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, short) = (dir.join("good"), dir.join("short"));
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        std::fs::write(&short, "tooshort\n").unwrap();
        // Set directly: the developer's shell may export ADMIN_TOKEN, which
        // conflicts with --admin-token-file in a parse.
        let with_file = |file: std::path::PathBuf| {
            let mut admin = parse(&[]).unwrap().admin;
            (admin.admin_token, admin.admin_token_file) = (None, Some(file));
            admin
        };
        let mut admin = with_file(good);
        admin.read_token_file().unwrap();
        assert_eq!(admin.admin_token.as_deref(), Some("0123456789abcdef0123"));
        let error = with_file(short).read_token_file().unwrap_err();
        assert!(error.contains("ADMIN_TOKEN_FILE") && error.contains("16 characters"), "{error}");
        assert!(with_file(dir.join("absent")).read_token_file().unwrap_err().contains("absent"));
        assert!(parse(&["--admin-token", "0123456789abcdef", "--admin-token-file", "x"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_admin_token_nobody_could_send_is_refused() {
        assert!(parse_admin_token(&" ".repeat(16)).unwrap_err().contains("printable"));
        assert!(parse_admin_token("0123456789 abcdef").is_err());
        assert!(parse_admin_token("0123456789abcdef").is_ok());
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        assert!(parse(&["--request-timeout-s", "0"]).is_err());
    }

    #[test]
    fn the_record_carries_the_seed_defaults() {
        let settings = parse(&[]).unwrap().handler_settings();
        assert_eq!(settings.defaults.temperature, 0.8);
        assert_eq!(settings.defaults.max_tokens, 500);
        assert_eq!(settings.defaults.stop, ["Human:", "Assistant:", "\n\n\n"]);
        assert_eq!(settings.max_batch, 32);
        assert!(settings.fallback_models.is_empty());
    }

    #[test]
    fn overrides_and_fallbacks_reach_the_record() {
        let config =
            parse(&["--default-stop", "[\"END\"]", "--fallback-models", " a, ,b ", "--default-top-k", "7"])
                .unwrap();
        let settings = config.handler_settings();
        assert_eq!(settings.defaults.stop, ["END"]);
        assert_eq!(settings.fallback_models, ["a", "b"]);
        assert_eq!(settings.defaults.top_k, 7);
    }

    #[test]
    fn a_bad_stop_list_is_refused() {
        assert!(parse(&["--default-stop", "nope"]).is_err());
        assert!(parse(&["--default-stop", "[\"a\",\"b\",\"c\",\"d\",\"e\"]"]).is_err());
    }
}
