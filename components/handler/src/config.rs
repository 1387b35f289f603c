//! The handler's settings, read from the host's typed record once per
//! instance (an instance serves many requests of one connection) and never
//! re-parsed per request. The host validated every value and owns every
//! default; nothing here repeats one.

use std::sync::OnceLock;

use llm_service_sdk::runtime::{self, BackendKind, HandlerSettings};

use crate::backend::{Backend, Kind};
use crate::settings::Settings;

/// What the operator configured, as the handler uses it.
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    /// Generation settings before the request's own.
    pub defaults: Settings,
    pub max_prompt_chars: usize,
    pub max_batch: usize,
    /// Tried in order after the requested model.
    pub fallback_models: Vec<String>,
    pub cache_ttl_s: u64,
    /// STALE_IF_ERROR (0: off).
    pub stale_if_error_s: u64,
    pub log_prompts: bool,
}

impl Config {
    /// The settings, asked of the host on first use.
    pub fn get() -> &'static Config {
        static CONFIG: OnceLock<Config> = OnceLock::new();
        CONFIG.get_or_init(|| Self::from_record(runtime::settings()))
    }

    /// From the host's record.
    pub fn from_record(record: HandlerSettings) -> Self {
        let HandlerSettings {
            backend_kind,
            backend_url,
            defaults,
            max_prompt_chars,
            max_batch,
            fallback_models,
            cache_ttl_s,
            stale_if_error_s,
            log_prompts,
        } = record;
        let kind = match backend_kind {
            BackendKind::Ollama => Kind::Ollama,
            BackendKind::Openai => Kind::OpenAi,
        };
        Self {
            backend: Backend::new(kind, &backend_url),
            defaults: Settings {
                temperature: defaults.temperature,
                max_tokens: defaults.max_tokens,
                top_p: defaults.top_p,
                top_k: defaults.top_k,
                repeat_penalty: defaults.repeat_penalty,
                stop: defaults.stop,
                seed: None,
            },
            max_prompt_chars: max_prompt_chars as usize,
            max_batch: max_batch as usize,
            fallback_models,
            cache_ttl_s,
            stale_if_error_s,
            log_prompts,
        }
    }
}
