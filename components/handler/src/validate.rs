//! POST /validate-model (or GET, as the seed's troubleshooting calls it),
//! optionally `{"model", "prompt", "max_tokens"}` (defaults: the current
//! model, a short greeting, 16 tokens): is the model there, how big, how
//! fast, and is its answer any good ([`crate::quality`]). The host's
//! sampled quality checks call it with their own probes.
//!
//! performance_score (0-100) = 70 × min(tokens per second / 30, 1)
//!                            + 30 × max(0, 1 − time to first token / 2 s),
//! from one short streamed generation at temperature 0, which bypasses the
//! cache: 30 tokens/s and an instant first token score 100; a model that
//! never streams scores 0.

use std::time::{Duration, Instant};

use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::{Map, Value, json};

use crate::backend::{Backend, Generation, StreamEvent};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::memory;
use crate::quality::{ProbeAnswer, ProbeLimits, checks, first_failure};

/// Tokens asked of the model when validating it.
const PROBE_TOKENS: u32 = 16;
/// The most tokens a caller's probe may ask for.
const MAX_PROBE_TOKENS: u32 = 4096;
const PROBE_PROMPT: &str = "Say hello in one short sentence.";
/// The longest probe prompt.
const MAX_PROBE_CHARS: usize = 2_000;
/// Tokens per second that earn the full speed share of the score.
const FULL_SPEED_TOKENS_PER_S: f64 = 30.0;
/// A first token later than this earns no latency share.
const SLOWEST_FIRST_TOKEN_S: f64 = 2.0;

/// What to validate.
struct Ask {
    model: String,
    prompt: String,
    max_tokens: u32,
}

pub fn validate(request: &Request) -> Reply {
    let outcome = ask(request.body()).and_then(|ask| {
        let backend = &Config::get().backend;
        let found = backend.find_model(&ask.model)?;
        let validated_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let Some(info) = found else {
            return Ok(json!({
                "model_available": false, "model_name": ask.model, "model_size": null,
                "performance_score": 0.0, "last_validation": validated_at,
            }));
        };
        let (answer, first_token) = probe(backend, &info.name, &ask)?;
        let generating = first_token.map_or(Duration::ZERO, |first| answer.elapsed.saturating_sub(first));
        let tokens_per_s =
            if generating.is_zero() { 0.0 } else { answer.tokens as f64 / generating.as_secs_f64() };
        let limits = ProbeLimits::from_environment(ask.max_tokens);
        let failed = first_failure(&answer, &limits);
        let passed: Map<String, Value> = checks(&answer, &limits)
            .into_iter()
            .map(|(name, passed)| (name.to_string(), passed.into()))
            .collect();
        Ok(json!({
            "model_available": true,
            "model_name": info.name,
            "model_size": info.size_bytes.map(memory),
            "performance_score": score(first_token, tokens_per_s),
            "last_validation": validated_at,
            "time_to_first_token": first_token.map(|t| t.as_secs_f64()),
            "tokens_per_second": tokens_per_s,
            "quality": if failed.is_none() { "ok" } else { "degraded" },
            "failed_check": failed,
            "checks": passed,
        }))
    });
    match outcome {
        Ok(body) => Response::json(200, &body).into(),
        Err(error) => error.response().into(),
    }
}

/// The body's fields, each optional.
fn ask(body: &[u8]) -> Result<Ask, ApiError> {
    let model = crate::models::model_field(body, false)?.unwrap_or_else(runtime::current_model);
    let object = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice::<Map<String, Value>>(body)
            .map_err(|_| ApiError::invalid("body", "body must be a JSON object"))?
    };
    let prompt = match object.get("prompt") {
        None | Some(Value::Null) => PROBE_PROMPT.to_string(),
        Some(Value::String(prompt))
            if !prompt.trim().is_empty() && prompt.chars().count() <= MAX_PROBE_CHARS =>
        {
            prompt.clone()
        }
        Some(_) => {
            let message =
                format!("prompt must be a non-empty string of at most {MAX_PROBE_CHARS} characters");
            return Err(ApiError::invalid("prompt", message));
        }
    };
    let max_tokens = match object.get("max_tokens") {
        None | Some(Value::Null) => PROBE_TOKENS,
        Some(value) => value
            .as_u64()
            .filter(|tokens| (1..=u64::from(MAX_PROBE_TOKENS)).contains(tokens))
            .map(|tokens| tokens as u32)
            .ok_or_else(|| {
                ApiError::invalid(
                    "max_tokens",
                    format!("max_tokens must be a whole number from 1 to {MAX_PROBE_TOKENS}"),
                )
            })?,
    };
    Ok(Ask { model, prompt, max_tokens })
}

/// One streamed generation of `ask`: the answer, and when its first token came.
fn probe(backend: &Backend, model: &str, ask: &Ask) -> Result<(ProbeAnswer, Option<Duration>), ApiError> {
    let mut settings = Config::get().defaults.clone();
    settings.max_tokens = ask.max_tokens;
    settings.temperature = 0.0;
    let generation =
        Generation { model, system: None, prompt: &ask.prompt, settings: &settings, question: None };
    let started = Instant::now();
    let mut response = backend.open_stream(model, backend.start(&generation, true)?)?;
    let (mut answer, mut first_token, mut chunks, mut reason) = (ProbeAnswer::default(), None, 0u64, None);
    while let Some(line) = response.next_line().map_err(|error| backend.failed(error))? {
        match backend.stream_event(&line)? {
            StreamEvent::Text(text) => {
                first_token.get_or_insert_with(|| started.elapsed());
                answer.text.push_str(&text);
                chunks += 1;
            }
            StreamEvent::Finish(why) => reason = Some(why),
            StreamEvent::Done(ending) => {
                answer.text.push_str(&ending.text);
                answer.ended = true;
                answer.done_reason = ending.done_reason.or(reason.take());
                answer.tokens = ending.tokens_generated.unwrap_or(chunks);
                break;
            }
            _ => {}
        }
    }
    if !answer.ended {
        answer.tokens = chunks;
    }
    answer.elapsed = started.elapsed();
    Ok((answer, first_token))
}

fn score(first_token: Option<Duration>, tokens_per_s: f64) -> f64 {
    let Some(first_token) = first_token else { return 0.0 };
    let speed = (tokens_per_s / FULL_SPEED_TOKENS_PER_S).min(1.0);
    let latency = (1.0 - first_token.as_secs_f64() / SLOWEST_FIRST_TOKEN_S).max(0.0);
    ((70.0 * speed + 30.0 * latency) * 10.0).round() / 10.0
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
