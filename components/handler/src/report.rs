//! One report to the host per generation request: counted, and logged as
//! one line (with the prompt only when the operator set LOG_PROMPTS).

use std::time::Instant;

use llm_service_sdk::runtime::{self, GenerationReport};

use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::request::GenerateRequest;

/// Reports `request`, answered with `status` and `outcome` (a stream's
/// status is 200 even when it ended with an error line).
pub fn generation(request: &GenerateRequest, started: Instant, status: u16, outcome: &Outcome) {
    crate::span::annotate(request, outcome);
    runtime::report_generation(&of_generation(request, started, status, outcome));
}

/// What [`generation`] reports (an edge replay carries it too).
pub fn of_generation(
    request: &GenerateRequest,
    started: Instant,
    status: u16,
    outcome: &Outcome,
) -> GenerationReport {
    let (model, cache_hit, tokens_generated, error_kind) = match outcome {
        Ok(answer) => (
            answer.stored.model.clone(),
            answer.cache_use.served_from_cache(),
            answer.stored.tokens_generated,
            None,
        ),
        Err(error) => (request.primary_model().to_string(), false, 0, Some(error.kind().to_string())),
    };
    GenerationReport {
        character: request.character_name.clone(),
        model,
        cache_hit,
        tokens_generated,
        prompt_length: u32::try_from(request.prompt.chars().count()).unwrap_or(u32::MAX),
        status,
        response_time_s: started.elapsed().as_secs_f64(),
        error_kind,
        prompt: Config::get().log_prompts.then(|| request.prompt.clone()),
    }
}

/// Reports a request refused before it was understood.
pub fn rejected(error: &ApiError, started: Instant) {
    runtime::report_generation(&GenerationReport {
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
