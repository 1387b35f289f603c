//! The client dialects: the seed's own ([`seed`], [`seed_batch`]),
//! Ollama's API ([`ollama`], [`ollama_meta`], [`ollama_options`]),
//! OpenAI's ([`openai`], [`openai_completions`], [`openai_meta`],
//! [`openai_params`], [`openai_responses`]) and Anthropic's Messages
//! ([`anthropic`], [`anthropic_frames`]). Each is a codec around the one
//! generation pipeline: it decodes its request into a
//! [`crate::request::GenerateRequest`] carrying a [`Question`], and frames
//! the pipeline's answer in its own shapes ([`crate::serve::Framing`]).
//! Either dialect runs against either backend protocol; the backends
//! translate the question.
//!
//! Each dialect's main file lists the paths it serves (its `ROUTES`);
//! [`DIALECTS`] gathers them, so a new dialect is its files and one line
//! here.
//!
//! This module holds what all need: the clock in each dialect's format,
//! answer ids, short-lived caching of model listings, and the checks every
//! dialect request body goes through.

pub mod anthropic;
pub mod anthropic_frames;
pub mod ollama;
pub mod ollama_meta;
pub mod ollama_options;
pub mod openai;
pub mod openai_completions;
pub mod openai_meta;
pub mod openai_params;
pub mod openai_responses;
pub mod openai_responses_frames;
pub mod seed;
pub mod seed_batch;

use std::cell::Cell;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use llm_service_sdk::bindings::llm_service::host::cache;
use llm_service_sdk::bindings::llm_service::host::edge::Vary;
use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::ApiError;
use crate::question::Question;
use crate::report;
use crate::request::{GenerateRequest, MAX_CHARACTER_CHARS, MAX_MODEL_CHARS, bounded_string, models_to_try};

/// One route: a path (or, for a prefix route, what a name follows) and
/// the methods it answers. A known path asked with another method is a 405
/// listing these methods in `Allow`.
pub struct Route {
    pub path: &'static str,
    /// Whether `path` is a prefix that a name follows.
    pub prefix: bool,
    pub methods: &'static [&'static str],
    pub handle: fn(&Request) -> Reply,
}

impl Route {
    /// `path` itself.
    pub const fn exact(
        path: &'static str,
        methods: &'static [&'static str],
        handle: fn(&Request) -> Reply,
    ) -> Self {
        Self { path, prefix: false, methods, handle }
    }

    /// Every path that starts with `path` and goes on.
    pub const fn prefix(
        path: &'static str,
        methods: &'static [&'static str],
        handle: fn(&Request) -> Reply,
    ) -> Self {
        Self { path, prefix: true, methods, handle }
    }
}

/// Every dialect's routes.
pub const DIALECTS: &[&[Route]] = &[seed::ROUTES, ollama::ROUTES, openai::ROUTES, anthropic::ROUTES];
use crate::serve::{self, Framing};
use crate::stamp::Stamp;

/// Seconds a model listing (`/api/tags`, `/v1/models`) is reused: a pulled
/// model shows within this, and a burst of clients costs one backend call.
pub const LISTING_FRESH_S: u64 = 5;
/// Seconds `/api/ps` is reused: what is loaded changes faster.
pub const LOADED_FRESH_S: u64 = 2;
/// Cache keys of listings start so (never cleared by /cache/clear, which
/// removes answers; they expire within seconds).
const LISTING_KEY_PREFIX: &str = "llm_meta:";

/// Now, as RFC 3339 with nanoseconds (Ollama's `created_at`).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// An id unique enough for one answer: the clock's nanoseconds and a
/// per-instance counter, in hex.
pub fn answer_id(prefix: &str) -> String {
    thread_local!(static NEXT: Cell<u64> = const { Cell::new(0) });
    let count = NEXT.with(|next| {
        let count = next.get();
        next.set(count.wrapping_add(1));
        count
    });
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or_default();
    format!("{prefix}{nanos:x}{count:04x}")
}

/// The body as a JSON object, or the error that says why not.
pub fn object_body(request: &Request) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(request.body())? {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid("body", "body must be a JSON object")),
    }
}

/// The request headers a dialect's answer depends on: the character may
/// come from `X-Character`, and `Cache-Control` may skip the cache.
const VARY: [&str; 2] = ["x-character", "cache-control"];

/// `request`'s values of the headers its answer depends on, for a replay.
pub fn vary(request: &Request) -> Vec<Vary> {
    VARY.iter()
        .map(|name| Vary { name: (*name).to_string(), value: request.header(name).map(str::to_string) })
        .collect()
}

/// Whether the client asked not to use the cache (`Cache-Control: no-cache`
/// or `no-store`): these dialects have no `use_cache` field.
pub fn cache_bypassed(request: &Request) -> bool {
    request.header("cache-control").is_some_and(|value| {
        value.split(',').map(str::trim).any(|directive| directive == "no-cache" || directive == "no-store")
    })
}

/// A generation request for `question`, asked by `request` with `body`:
/// - `prompt` is what the key's prompt hash, the logs, the metrics and a
///   plugin see (a chat's last user message);
/// - the model is `body.model` (else the current one), then FALLBACK_MODELS;
/// - the character is the `X-Character` header or `body.character_name`
///   (the seed's field), and its prompt plugin is pinned; without either,
///   no plugin runs;
/// - `Cache-Control: no-cache` or `no-store` skips the cache.
pub fn generation_request(
    request: &Request,
    body: &Map<String, Value>,
    question: Question,
    prompt: String,
    stream: bool,
) -> Result<GenerateRequest, ApiError> {
    let config = Config::get();
    let model = bounded_string(body, "model", "", MAX_MODEL_CHARS)?;
    let character = match request.header("x-character") {
        Some(character) => Some(character.to_string()),
        None => string_field(body, "character_name")?,
    }
    .filter(|character| !character.is_empty());
    if let Some(character) = &character
        && character.chars().count() > MAX_CHARACTER_CHARS
    {
        return Err(ApiError::invalid(
            "character_name",
            format!(
                "the character has {} characters; the limit is {MAX_CHARACTER_CHARS}",
                character.chars().count()
            ),
        ));
    }
    let chars = prompt.chars().count();
    if chars > config.max_prompt_chars {
        let limit = config.max_prompt_chars;
        return Err(ApiError::invalid(
            "prompt",
            format!("the prompt has {chars} characters; the limit is {limit} (MAX_PROMPT_CHARS)"),
        ));
    }
    let model = model
        .filter(|model| !model.trim().is_empty())
        .unwrap_or_else(llm_service_sdk::runtime::model_for_generation);
    let mut question = question;
    question.digest = ollama_meta::digest_of(&model);
    let mut settings = config.defaults.clone();
    // The seed's metadata reports these; the question carries what is sent.
    if let Some(temperature) = question.options.get("temperature").and_then(Value::as_f64) {
        settings.temperature = temperature;
    }
    let models = served_only(models_to_try(model, config), config)?;
    let mut generation = GenerateRequest {
        prompt,
        character_name: character,
        conversation_id: None,
        use_cache: !cache_bypassed(request),
        stream,
        cache_ttl_s: None,
        settings,
        models,
        plugin: None,
        question: Some(Box::new(question)),
    };
    crate::plugin::pin(&mut generation);
    Ok(generation)
}

/// Serves what a dialect read from `request` (arrived at `started`): the
/// generation in its framing, or the refusal in the dialect's shape.
pub fn serve_read<F: Framing>(
    request: &Request,
    started: Instant,
    read: Result<(GenerateRequest, F), ApiError>,
    refusal: fn(&ApiError) -> Response,
) -> Reply {
    match read {
        Ok((generation, framing)) => serve::answer(generation, framing, Stamp::live(started), vary(request)),
        Err(error) => {
            report::rejected(&error, started);
            refusal(&error).into()
        }
    }
}

/// `models` without those an OpenAI-compatible backend does not list: such
/// a server answers any name with the model it has loaded, so a typo would
/// get another model's answer (under the typo's name, cached apart). The
/// next fallback answers instead; none left is the 404 Ollama would give.
/// An Ollama backend says 404 itself, and a listing that cannot be read
/// drops nothing (the generation reports any real problem).
fn served_only(models: Vec<String>, config: &Config) -> Result<Vec<String>, ApiError> {
    if config.backend.kind() != crate::backend::Kind::OpenAi {
        return Ok(models);
    }
    // One read of the listing for every model asked (it is on a hit's path).
    let Some(listed) = openai_meta::listed_names() else { return Ok(models) };
    let asked = models[0].clone();
    let served: Vec<String> = models.into_iter().filter(|model| listed.contains(model)).collect();
    if served.is_empty() {
        return Err(ApiError::ModelNotFound { model: asked });
    }
    Ok(served)
}

/// A tool the client runs, in the shape Ollama's and OpenAI's chat share.
pub fn function_tool(name: &str, description: Option<&Value>, parameters: Option<&Value>) -> Value {
    let parameters = parameters.cloned().unwrap_or_else(|| serde_json::json!({"type": "object"}));
    let mut function = serde_json::json!({"name": name, "parameters": parameters});
    if let Some(description) = description.filter(|description| description.is_string()) {
        function["description"] = description.clone();
    }
    serde_json::json!({"type": "function", "function": function})
}

/// An optional string field; `name` locates it in errors.
pub fn string_field(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(name, format!("{name} must be a string"))),
    }
}

/// An optional boolean field.
pub fn bool_field(object: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(ApiError::invalid(name, format!("{name} must be true or false"))),
    }
}

/// A list of base64 images (absent, null and `[]` alike are none).
pub fn images_field(object: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match object.get("images") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid(field, format!("{field} must be a list of base64 strings"))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(field, format!("{field} must be a list of base64 strings"))),
    }
}

/// `fetch`'s bytes, reused for `fresh_s` seconds under `name` through the
/// host's cache: concurrent callers share one backend call. A failure is
/// not kept.
pub fn short_cached(
    name: &str,
    fresh_s: u64,
    fetch: impl FnOnce() -> Result<Vec<u8>, ApiError>,
) -> Result<Vec<u8>, ApiError> {
    let key = format!("{LISTING_KEY_PREFIX}{name}");
    let found = cache::lookup(&key, 0);
    match found.found {
        cache::Found::Fresh(cached) => Ok(cached.value),
        cache::Found::Lead(lead) => match fetch() {
            Ok(bytes) => {
                let _ = lead.land(&bytes, fresh_s, 0);
                Ok(bytes)
            }
            // Dropping the lead abandons the flight: followers fetch themselves.
            Err(error) => Err(error),
        },
        cache::Found::Follow(follow) => loop {
            match follow.next() {
                cache::FlightEvent::Landed(bytes) => return Ok(bytes),
                cache::FlightEvent::Chunk(_) => {}
                cache::FlightEvent::Crashed(_) | cache::FlightEvent::Abandoned => return fetch(),
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_dialects_claim_one_path() {
        let mut seen = std::collections::HashSet::new();
        for route in DIALECTS.iter().flat_map(|routes| routes.iter()) {
            assert!(seen.insert((route.path, route.prefix)), "{} is claimed twice", route.path);
            assert!(!route.methods.is_empty(), "{} answers no method", route.path);
        }
        assert!(seen.contains(&("/generate", false)) && seen.contains(&("/v1/messages", false)));
    }
}
