//! POST /generate: validate, merge settings, ask the backend (falling back
//! through FALLBACK_MODELS), answer in the seed's shape, whole or streamed
//! as NDJSON.

use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::outbound::Pending;
use llm_service_sdk::runtime;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, Completion, Generation};
use crate::error::ApiError;
use crate::plugin::{self, PluginUse};
use crate::response_cache::{self, Stored, now_s};
use crate::settings::Settings;

/// Longest prompt accepted unless MAX_PROMPT_CHARS says otherwise.
const DEFAULT_MAX_PROMPT_CHARS: usize = 32768;

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    pub character_name: Option<String>,
    pub use_cache: bool,
    pub model: Option<String>,
    pub stream: bool,
    /// Seconds to cache the answer, overriding LLM_RESPONSE_CACHE_TTL.
    pub cache_ttl_s: Option<u64>,
    pub settings: Settings,
    /// Handed to the character's plugin; not part of the cache key (the
    /// prompt carries the conversation).
    pub conversation_id: Option<String>,
    /// The system prompt, when a plugin set one.
    pub system: Option<String>,
    /// The plugin that transformed this request.
    pub plugin: Option<PluginUse>,
}

impl GenerateRequest {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)?;
        Self::from_value(&value, "")
    }

    /// Validates one request object; `prefix` locates it in error fields
    /// (`requests[2].` inside a batch).
    pub fn from_value(value: &Value, prefix: &str) -> Result<Self, ApiError> {
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
        let max_chars = std::env::var("MAX_PROMPT_CHARS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_PROMPT_CHARS);
        let chars = prompt.chars().count();
        if chars > max_chars {
            return Err(ApiError::invalid(
                &field("prompt"),
                format!("prompt has {chars} characters; the limit is {max_chars} (MAX_PROMPT_CHARS)"),
            ));
        }
        let mut settings = Settings::defaults();
        match object.get("settings") {
            None | Some(Value::Null) => {}
            Some(Value::Object(overrides)) => settings.merge(overrides, &field("settings"))?,
            Some(_) => return Err(ApiError::invalid(&field("settings"), "settings must be an object")),
        }
        Ok(Self {
            prompt,
            character_name: optional_string(object, "character_name", prefix)?,
            use_cache: optional_bool(object, "use_cache", prefix)?.unwrap_or(true),
            model: optional_string(object, "model", prefix)?.filter(|model| !model.trim().is_empty()),
            stream: optional_bool(object, "stream", prefix)?.unwrap_or(false),
            cache_ttl_s: cache_ttl(object, prefix)?,
            settings,
            conversation_id: optional_string(object, "conversation_id", prefix)?,
            system: None,
            plugin: None,
        })
    }

    /// The models to try, in order: the requested (or current) one, then
    /// FALLBACK_MODELS, each once.
    pub fn models(&self) -> Vec<String> {
        let first = self.model.clone().unwrap_or_else(runtime::current_model);
        let fallbacks = std::env::var("FALLBACK_MODELS").unwrap_or_default();
        let mut models = vec![first];
        for model in fallbacks.split(',').map(str::trim).filter(|model| !model.is_empty()) {
            if !models.iter().any(|known| known == model) {
                models.push(model.to_string());
            }
        }
        models
    }

    /// The backend request for `model`.
    pub fn generation<'a>(&'a self, model: &'a str) -> Generation<'a> {
        Generation { model, system: self.system.as_deref(), prompt: &self.prompt, settings: &self.settings }
    }
}

/// How the cache took part in an answer (the `X-Cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    Bypass,
    Stale,
}

impl CacheUse {
    /// The `X-Cache` value.
    pub fn header(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
            Self::Stale => "STALE",
        }
    }
}

/// The seed's response body for `stored`.
pub fn answer_body(stored: &Stored, started: Instant, cache_use: CacheUse) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("response".into(), json!(stored.response));
    body.insert("model".into(), json!(stored.model));
    body.insert("generation_time".into(), json!(started.elapsed().as_secs_f64()));
    body.insert("cache_hit".into(), json!(matches!(cache_use, CacheUse::Hit | CacheUse::Stale)));
    body.insert(
        "metadata".into(),
        json!({
            "temperature": stored.temperature,
            "tokens_generated": stored.tokens_generated,
            "prompt_hash": stored.prompt_hash,
        }),
    );
    if cache_use == CacheUse::Stale {
        body.insert("stale".into(), json!(true));
    }
    body
}

/// The `X-Cache` header, and `Age` on answers from the cache.
pub fn with_cache_headers(response: Response, stored: &Stored, cache_use: CacheUse) -> Response {
    let response = response.with_header("x-cache", cache_use.header());
    match cache_use {
        CacheUse::Hit | CacheUse::Stale => {
            response.with_header("age", &now_s().saturating_sub(stored.stored_at).to_string())
        }
        CacheUse::Miss | CacheUse::Bypass => response,
    }
}

/// The whole HTTP answer for `stored`.
pub fn answer(stored: &Stored, started: Instant, cache_use: CacheUse) -> Response {
    with_cache_headers(Response::json(200, &answer_body(stored, started, cache_use)), stored, cache_use)
}

fn cache_ttl(object: &Map<String, Value>, prefix: &str) -> Result<Option<u64>, ApiError> {
    match object.get("cache_ttl") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(ttl) if (1..=31_536_000).contains(&ttl) => Ok(Some(ttl)),
            _ => Err(ApiError::invalid(
                &format!("{prefix}cache_ttl"),
                "cache_ttl must be a whole number of seconds between 1 and 31536000",
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

fn optional_bool(object: &Map<String, Value>, name: &str, prefix: &str) -> Result<Option<bool>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => {
            Err(ApiError::invalid(&format!("{prefix}{name}"), format!("{name} must be true or false")))
        }
    }
}

/// Whether another model may do better: not for overload or timeouts, where
/// trying again would only add load or overrun the deadline.
pub fn worth_a_fallback(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::ModelNotFound { .. } | ApiError::Unavailable { .. } | ApiError::BadGateway { .. }
    )
}

/// Finishes a generation whose first attempt is `first`, trying the
/// fallback models after it. Returns the answer and the model that gave it;
/// if all fail, the first model's error.
pub fn complete(
    backend: &Backend,
    request: &GenerateRequest,
    first: Result<Pending, ApiError>,
) -> Result<(Completion, String), ApiError> {
    let mut first = Some(first);
    let mut first_error = None;
    for model in request.models() {
        let generation = request.generation(&model);
        let attempt = match first.take() {
            Some(first) => first,
            None => backend.start(&generation, false),
        };
        let result = attempt.and_then(|pending| backend.finish(&generation, pending));
        match result {
            Ok(completion) => return Ok((completion, model)),
            Err(error) if worth_a_fallback(&error) => {
                first_error.get_or_insert(error);
            }
            Err(error) => return Err(first_error.unwrap_or(error)),
        }
    }
    Err(first_error.expect("at least one model was tried"))
}

/// What is stored for `completion` of `request` by `model`, after the
/// request's plugin post-processed the text.
pub fn finished(request: &GenerateRequest, completion: Completion, model: &str) -> Result<Stored, ApiError> {
    let text = plugin::post_process(request, completion.text)?;
    Ok(response_cache::stored(request, &text, model, completion.tokens_generated))
}

/// POST /generate.
pub fn post(request: &Request) -> Reply {
    let started = Instant::now();
    let mut parsed = match GenerateRequest::parse(request.body()) {
        Ok(parsed) => parsed,
        Err(error) => {
            report_rejected(&error, started);
            return error.response().into();
        }
    };
    if let Err(error) = plugin::apply(&mut parsed) {
        report(&parsed, started, error.status(), None, CacheUse::Miss, Some(error.kind()));
        return error.response().into();
    }
    let backend = Backend::from_env();
    if parsed.stream {
        return crate::stream::respond(backend, parsed, started);
    }
    let served = crate::cached::respond(&backend, &parsed, started);
    served.report(&parsed, started);
    served.response.into()
}

/// An answer and what the host should count about it.
pub struct Served {
    pub response: Response,
    pub stored: Option<Stored>,
    pub cache_use: CacheUse,
    pub error_kind: Option<&'static str>,
}

impl Served {
    /// A generated or cached answer.
    pub fn answer(stored: Stored, started: Instant, cache_use: CacheUse) -> Self {
        Self {
            response: answer(&stored, started, cache_use),
            stored: Some(stored),
            cache_use,
            error_kind: None,
        }
    }

    /// A failure.
    pub fn failure(error: &ApiError) -> Self {
        Self {
            response: error.response(),
            stored: None,
            cache_use: CacheUse::Miss,
            error_kind: Some(error.kind()),
        }
    }

    /// Another request's failure, passed on (single-flight).
    pub fn relayed(response: Response) -> Self {
        Self { response, stored: None, cache_use: CacheUse::Miss, error_kind: Some("relayed_failure") }
    }

    /// Tells the host about this answer to `request`.
    pub fn report(&self, request: &GenerateRequest, started: Instant) {
        report(
            request,
            started,
            self.response.status(),
            self.stored.as_ref(),
            self.cache_use,
            self.error_kind,
        );
    }
}

/// Tells the host about one generation: counted, and logged as one line.
pub fn report(
    request: &GenerateRequest,
    started: Instant,
    status: u16,
    stored: Option<&Stored>,
    cache_use: CacheUse,
    error_kind: Option<&str>,
) {
    let model = stored.map(|stored| stored.model.clone()).unwrap_or_else(|| request.models().remove(0));
    runtime::report_generation(&runtime::GenerationReport {
        character: request.character_name.clone(),
        model,
        cache_hit: matches!(cache_use, CacheUse::Hit | CacheUse::Stale),
        tokens_generated: stored.map_or(0, |stored| stored.tokens_generated),
        prompt_length: u32::try_from(request.prompt.chars().count()).unwrap_or(u32::MAX),
        status,
        response_time_s: started.elapsed().as_secs_f64(),
        error_kind: error_kind.map(str::to_string),
        prompt: log_prompts().then(|| request.prompt.clone()),
    });
}

/// Counts a request refused before it was understood.
fn report_rejected(error: &ApiError, started: Instant) {
    runtime::report_generation(&runtime::GenerationReport {
        character: None,
        model: String::new(),
        cache_hit: false,
        tokens_generated: 0,
        prompt_length: 0,
        status: error.status(),
        response_time_s: started.elapsed().as_secs_f64(),
        error_kind: Some(error.kind().to_string()),
        prompt: None,
    });
}

/// LOG_PROMPTS=true lets prompt text into the log; nothing else does.
fn log_prompts() -> bool {
    std::env::var("LOG_PROMPTS").is_ok_and(|value| value == "true")
}
