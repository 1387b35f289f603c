//! Model management: GET /models (what the backend offers), POST /model
//! (switch the current model, kept by the host, and empty the response
//! cache, as the seed says), POST /validate-model (is it there, how big, how
//! fast).
//!
//! performance_score (0-100) = 70 × min(tokens per second / 30, 1)
//!                            + 30 × max(0, 1 − time to first token / 2 s),
//! from one short streamed generation: 30 tokens/s and an instant first
//! token score 100; a model that never streams scores 0.

use std::time::{Duration, Instant};

use llm_service_sdk::bindings::llm_service::host::cache;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::{Value, json};

use crate::backend::{Backend, Ending, Generation, ModelInfo, StreamEvent};
use crate::config::Config;
use crate::error::ApiError;
use crate::key::KEY_PREFIX;
use crate::metrics::memory;

/// Tokens asked of the model when validating it.
const PROBE_TOKENS: u32 = 16;
const PROBE_PROMPT: &str = "Say hello in one short sentence.";
/// Tokens per second that earn the full speed share of the score.
const FULL_SPEED_TOKENS_PER_S: f64 = 30.0;
/// A first token later than this earns no latency share.
const SLOWEST_FIRST_TOKEN_S: f64 = 2.0;

/// GET /models.
pub fn list(_request: &Request) -> Reply {
    match Config::get().backend.list_models() {
        Ok(models) => {
            let models: Vec<Value> = models.iter().map(describe).collect();
            Response::json(200, &json!({"models": models, "current": runtime::current_model()})).into()
        }
        Err(error) => error.response().into(),
    }
}

/// POST /model `{"model": "..."}`.
pub fn switch(request: &Request) -> Reply {
    let outcome = model_field(request.body(), true).and_then(|model| {
        let model = model.expect("required");
        let backend = &Config::get().backend;
        backend.find_model(&model)?.ok_or(ApiError::ModelNotFound { model: model.clone() })?;
        let previous = runtime::set_current_model(&model);
        // Answers of the old model must not stand in for the new one.
        let cleared = cache::clear(KEY_PREFIX, None).unwrap_or(0);
        Ok(json!({"model": model, "previous": previous, "cache_cleared": cleared}))
    });
    match outcome {
        Ok(body) => Response::json(200, &body).into(),
        Err(error) => error.response().into(),
    }
}

/// POST /validate-model, optionally `{"model": "..."}` (default: the current one).
pub fn validate(request: &Request) -> Reply {
    let outcome = model_field(request.body(), false).and_then(|model| {
        let model = model.unwrap_or_else(runtime::current_model);
        let backend = &Config::get().backend;
        let found = backend.find_model(&model)?;
        let validated_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let Some(info) = found else {
            return Ok(json!({
                "model_available": false, "model_name": model, "model_size": null,
                "performance_score": 0.0, "last_validation": validated_at,
            }));
        };
        let (first_token, tokens_per_s) = probe(backend, &info.name)?;
        Ok(json!({
            "model_available": true,
            "model_name": info.name,
            "model_size": info.size_bytes.map(memory),
            "performance_score": score(first_token, tokens_per_s),
            "last_validation": validated_at,
            "time_to_first_token": first_token.map(|t| t.as_secs_f64()),
            "tokens_per_second": tokens_per_s,
        }))
    });
    match outcome {
        Ok(body) => Response::json(200, &body).into(),
        Err(error) => error.response().into(),
    }
}

/// One short streamed generation: time to the first token, tokens per second after it.
fn probe(backend: &Backend, model: &str) -> Result<(Option<Duration>, f64), ApiError> {
    let mut settings = Config::get().defaults.clone();
    settings.max_tokens = PROBE_TOKENS;
    settings.temperature = 0.0;
    let generation =
        Generation { model, system: None, prompt: PROBE_PROMPT, settings: &settings, question: None };
    let started = Instant::now();
    let mut response = backend.open_stream(model, backend.start(&generation, true)?)?;
    let mut first_token = None;
    let mut chunks = 0u64;
    let mut tokens = None;
    while let Some(line) = response.next_line().map_err(|error| backend.failed(error))? {
        match backend.stream_event(&line)? {
            StreamEvent::Text(_) => {
                first_token.get_or_insert_with(|| started.elapsed());
                chunks += 1;
            }
            StreamEvent::Done(Ending { tokens_generated, .. }) => {
                tokens = tokens_generated;
                break;
            }
            _ => {}
        }
    }
    let tokens = tokens.unwrap_or(chunks) as f64;
    let generating = first_token.map_or(Duration::ZERO, |first| started.elapsed().saturating_sub(first));
    let tokens_per_s = if generating.is_zero() { 0.0 } else { tokens / generating.as_secs_f64() };
    Ok((first_token, tokens_per_s))
}

fn score(first_token: Option<Duration>, tokens_per_s: f64) -> f64 {
    let Some(first_token) = first_token else { return 0.0 };
    let speed = (tokens_per_s / FULL_SPEED_TOKENS_PER_S).min(1.0);
    let latency = (1.0 - first_token.as_secs_f64() / SLOWEST_FIRST_TOKEN_S).max(0.0);
    ((70.0 * speed + 30.0 * latency) * 10.0).round() / 10.0
}

fn describe(model: &ModelInfo) -> Value {
    json!({"name": model.name, "size": model.size_bytes.map(memory)})
}

/// The optional (or required) `model` field of a JSON body.
fn model_field(body: &[u8], required: bool) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if required { Err(ApiError::invalid("model", "model is required")) } else { Ok(None) };
    }
    let value: Value = serde_json::from_slice(body)?;
    match value.get("model") {
        None | Some(Value::Null) if required => Err(ApiError::invalid("model", "model is required")),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(model)) if !model.trim().is_empty() => Ok(Some(model.clone())),
        Some(_) => Err(ApiError::invalid("model", "model must be a non-empty string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_rewards_speed_and_a_quick_first_token() {
        assert_eq!(score(Some(Duration::ZERO), 30.0), 100.0);
        assert_eq!(score(Some(Duration::from_secs(1)), 15.0), 50.0);
        assert_eq!(score(Some(Duration::from_secs(5)), 60.0), 70.0);
        assert_eq!(score(None, 0.0), 0.0);
    }
}
