//! A validated generation request: the seed's `/generate` body (or one
//! batch item) with settings merged over the operator's defaults, the
//! models to try resolved once, and the plugin version that serves its
//! character pinned. A leaf: it knows nothing of the cache or the host.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::ApiError;
use crate::question::Question;
use crate::settings::Settings;

/// Longest cache lifetime a request may ask for (a year).
const MAX_CACHE_TTL_S: u64 = 31_536_000;
/// Longest `character_name`: a name, not a document (it is in every cache
/// key and log line, and labels the metrics).
pub const MAX_CHARACTER_CHARS: usize = 128;
/// Longest `conversation_id` and `model`.
const MAX_ID_CHARS: usize = 256;
/// The longest model name a request may give (`/generate`'s and the dialects').
pub const MAX_MODEL_CHARS: usize = MAX_ID_CHARS;

/// What is sent to the model for a request: the client's prompt and
/// settings, or what its character's plugin made of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub system: Option<String>,
    pub prompt: String,
    pub settings: Settings,
}

/// A prompt plugin, pinned to the version that served the request's
/// character when it arrived.
pub trait PromptPlugin {
    /// Its name.
    fn name(&self) -> &str;
    /// SHA-256 of its bytes: part of the cache key.
    fn sha256(&self) -> &str;
    /// What to send to the model for `request`.
    fn transform(&self, request: &GenerateRequest) -> Result<Prepared, ApiError>;
    /// The answer's text as the client gets it.
    fn post_process(
        &self,
        request: &GenerateRequest,
        prepared: &Prepared,
        text: String,
    ) -> Result<String, ApiError>;
}

/// A validated generation request.
#[derive(Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    pub character_name: Option<String>,
    /// Handed to the character's plugin.
    pub conversation_id: Option<String>,
    pub use_cache: bool,
    pub stream: bool,
    /// Seconds to cache the answer, overriding LLM_RESPONSE_CACHE_TTL.
    pub cache_ttl_s: Option<u64>,
    pub settings: Settings,
    /// The models to try, in order: the requested (or current) one, then
    /// FALLBACK_MODELS, each once. Resolved once, so a model switch during
    /// the request never relabels its answer.
    pub models: Vec<String>,
    /// The plugin serving the character, if any.
    pub plugin: Option<Rc<dyn PromptPlugin>>,
    /// A client dialect's question (`None`: the seed's `/generate`, whose
    /// prompt and settings are the whole question).
    pub question: Option<Box<Question>>,
}

impl std::fmt::Debug for GenerateRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GenerateRequest")
            .field("character_name", &self.character_name)
            .field("models", &self.models)
            .field("plugin", &self.plugin.as_ref().map(|plugin| plugin.name().to_string()))
            .field("family", &self.question.as_ref().map(|question| question.family))
            .finish_non_exhaustive()
    }
}

impl GenerateRequest {
    /// Validates one request object; `prefix` locates it in error fields
    /// (`requests[2].` inside a batch). `current_model` is used when the
    /// request names none.
    pub fn from_value(
        value: &Value,
        prefix: &str,
        config: &Config,
        current_model: &dyn Fn() -> String,
    ) -> Result<Self, ApiError> {
        let field = |name: &str| format!("{prefix}{name}");
        let object = value.as_object().ok_or_else(|| {
            let name =
                if prefix.is_empty() { "body".to_string() } else { prefix.trim_end_matches('.').to_string() };
            ApiError::invalid(&name, format!("{name} must be a JSON object"))
        })?;
        let prompt = match object.get("prompt") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid(&field("prompt"), "prompt is required"));
            }
            Some(Value::String(prompt)) if prompt.trim().is_empty() => {
                return Err(ApiError::invalid(&field("prompt"), "prompt must not be empty"));
            }
            Some(Value::String(prompt)) => prompt.clone(),
            Some(_) => return Err(ApiError::invalid(&field("prompt"), "prompt must be a string")),
        };
        let chars = prompt.chars().count();
        if chars > config.max_prompt_chars {
            let limit = config.max_prompt_chars;
            return Err(ApiError::invalid(
                &field("prompt"),
                format!("prompt has {chars} characters; the limit is {limit} (MAX_PROMPT_CHARS)"),
            ));
        }
        let mut settings = config.defaults.clone();
        match object.get("settings") {
            None | Some(Value::Null) => {}
            Some(Value::Object(overrides)) => settings.merge(overrides, &field("settings"))?,
            Some(_) => return Err(ApiError::invalid(&field("settings"), "settings must be an object")),
        }
        let requested = bounded_string(object, "model", prefix, MAX_MODEL_CHARS)?
            .filter(|model| !model.trim().is_empty());
        let models = models_to_try(requested.unwrap_or_else(current_model), config);
        Ok(Self {
            prompt,
            character_name: bounded_string(object, "character_name", prefix, MAX_CHARACTER_CHARS)?,
            conversation_id: bounded_string(object, "conversation_id", prefix, MAX_ID_CHARS)?,
            use_cache: optional_bool(object, "use_cache", prefix)?.unwrap_or(true),
            stream: optional_bool(object, "stream", prefix)?.unwrap_or(false),
            cache_ttl_s: cache_ttl(object, prefix)?,
            settings,
            models,
            plugin: None,
            question: None,
        })
    }

    /// The model asked for first: what the answer is cached under.
    pub fn primary_model(&self) -> &str {
        &self.models[0]
    }

    /// What to send to the model: the plugin's transform, or the request.
    pub fn prepare(&self) -> Result<Prepared, ApiError> {
        match &self.plugin {
            Some(plugin) => plugin.transform(self),
            None => {
                Ok(Prepared { system: None, prompt: self.prompt.clone(), settings: self.settings.clone() })
            }
        }
    }

    /// The answer's text after the plugin (if any) post-processed it.
    pub fn post_process(&self, prepared: &Prepared, text: String) -> Result<String, ApiError> {
        match &self.plugin {
            Some(plugin) => plugin.post_process(self, prepared, text),
            None => Ok(text),
        }
    }
}

/// `model`, then each of FALLBACK_MODELS once.
pub fn models_to_try(model: String, config: &Config) -> Vec<String> {
    let mut models = vec![model];
    for fallback in &config.fallback_models {
        if !models.contains(fallback) {
            models.push(fallback.clone());
        }
    }
    models
}

fn cache_ttl(object: &Map<String, Value>, prefix: &str) -> Result<Option<u64>, ApiError> {
    match object.get("cache_ttl") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(ttl) if (1..=MAX_CACHE_TTL_S).contains(&ttl) => Ok(Some(ttl)),
            _ => Err(ApiError::invalid(
                &format!("{prefix}cache_ttl"),
                format!("cache_ttl must be a whole number of seconds between 1 and {MAX_CACHE_TTL_S}"),
            )),
        },
    }
}

fn optional_string(
    object: &Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(ApiError::invalid(&format!("{prefix}{name}"), format!("{name} must be a string"))),
    }
}

/// An optional string of at most `max` characters.
pub fn bounded_string(
    object: &Map<String, Value>,
    name: &str,
    prefix: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    let value = optional_string(object, name, prefix)?;
    match &value {
        Some(text) if text.chars().count() > max => Err(ApiError::invalid(
            &format!("{prefix}{name}"),
            format!("{name} has {} characters; the limit is {max}", text.chars().count()),
        )),
        _ => Ok(value),
    }
}

fn optional_bool(object: &Map<String, Value>, name: &str, prefix: &str) -> Result<Option<bool>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => {
            Err(ApiError::invalid(&format!("{prefix}{name}"), format!("{name} must be true or false")))
        }
    }
}

#[cfg(test)]
pub mod tests {
    use serde_json::json;

    use super::*;
    use crate::backend::{Backend, Kind};

    /// A configuration for tests: the given fallbacks, everything else plain.
    pub fn config(fallback_models: &[&str]) -> Config {
        Config {
            backend: Backend::new(Kind::Ollama, "http://backend"),
            defaults: crate::settings::tests::example(),
            max_prompt_chars: 100,
            max_batch: 4,
            fallback_models: fallback_models.iter().map(|model| model.to_string()).collect(),
            cache_ttl_s: 60,
            stale_if_error_s: 0,
            log_prompts: false,
        }
    }

    /// `body` parsed with `config`, the current model being "current".
    pub fn parsed(body: Value, config: &Config) -> GenerateRequest {
        GenerateRequest::from_value(&body, "", config, &|| "current".to_string()).unwrap()
    }

    #[test]
    fn the_models_are_the_requested_one_then_each_fallback_once() {
        let config = config(&["b", "a", "b"]);
        assert_eq!(parsed(json!({"prompt": "hi", "model": "a"}), &config).models, ["a", "b"]);
        assert_eq!(parsed(json!({"prompt": "hi"}), &config).models, ["current", "b", "a"]);
    }

    #[test]
    fn a_long_prompt_names_the_limit() {
        let error = GenerateRequest::from_value(
            &json!({"prompt": "x".repeat(101)}),
            "requests[1].",
            &config(&[]),
            &|| "m".into(),
        )
        .unwrap_err();
        assert!(
            matches!(&error, ApiError::Invalid { field, .. } if field == "requests[1].prompt"),
            "{error:?}"
        );
        assert!(error.message().contains("MAX_PROMPT_CHARS"));
    }

    #[test]
    fn a_character_name_is_bounded() {
        let long = "x".repeat(MAX_CHARACTER_CHARS + 1);
        let error = GenerateRequest::from_value(
            &json!({"prompt": "hi", "character_name": long}),
            "",
            &config(&[]),
            &|| "m".into(),
        )
        .unwrap_err();
        assert!(matches!(&error, ApiError::Invalid { field, .. } if field == "character_name"), "{error:?}");
        let fits = "x".repeat(MAX_CHARACTER_CHARS);
        assert!(
            GenerateRequest::from_value(
                &json!({"prompt": "hi", "character_name": fits}),
                "",
                &config(&[]),
                &|| "m".into()
            )
            .is_ok()
        );
    }
}
