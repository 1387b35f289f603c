//! OpenAI's legacy `POST /v1/completions`: a prompt (and `suffix`)
//! completed, as a `text_completion` object or, with `stream: true`,
//! server-sent events of the same object with the text in pieces, then
//! `data: [DONE]`. Runs as a generate question, like Ollama's own
//! `/v1/completions` (an Ollama backend gets `/api/generate`).

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::openai_params::{
    Envelope, answer, error_response, finish_reason, refuse_unsupported, sampling_options, sse_head, usage,
    write_error_event, write_event,
};
use super::string_field;
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::question::{Family, PromptParts, Question};
use crate::render::with_cache_headers;
use crate::serve::Framing;
use crate::stamp::Stamp;

/// POST /v1/completions.
pub fn completions(request: &Request) -> Reply {
    answer(request, "cmpl-", question, |envelope| CompletionFraming { envelope })
}

/// The question in `body` (`prompt`: one string, or a list of one), and
/// the prompt.
fn question(body: &Map<String, Value>) -> Result<(Question, String), ApiError> {
    let prompt = match body.get("prompt") {
        Some(Value::String(prompt)) => prompt.clone(),
        Some(Value::Array(prompts)) if prompts.len() == 1 && prompts[0].is_string() => {
            prompts[0].as_str().unwrap_or_default().to_string()
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "prompt",
                "prompt must be one string (one completion per request)",
            ));
        }
        _ => return Err(ApiError::invalid("prompt", "prompt must be a string")),
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    if body.get("echo") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if body.get("best_of").and_then(Value::as_u64).is_some_and(|best_of| best_of != 1) {
        return Err(ApiError::invalid("best_of", "best_of must be 1"));
    }
    refuse_unsupported(body)?;
    let mut question = Question::new(Family::Generate);
    question.options = sampling_options(body)?;
    question.prompt_parts = PromptParts { suffix: string_field(body, "suffix")?, ..PromptParts::default() };
    Ok((question, prompt))
}

/// `text_completion` objects.
#[derive(Clone)]
struct CompletionFraming {
    envelope: Envelope,
}

impl CompletionFraming {
    fn object(&self, model: &str, text: &str, finish: Option<&str>, stamp: &Stamp) -> Value {
        json!({
            "id": stamp.answer_id(self.envelope.id_prefix),
            "object": "text_completion",
            "created": stamp.created(),
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        })
    }
}

impl Framing for CompletionFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return error_response(error),
        };
        let stored = &answer.stored;
        let mut body = self.object(&stored.model, &stored.response, Some(finish_reason(stored)), stamp);
        body["usage"] = usage(outcome);
        with_cache_headers(Response::json(200, &body), answer.cache_use, answer.age_s)
    }

    fn error(&self, error: &ApiError) -> Response {
        error_response(error)
    }

    fn stream_head(&self) -> Response {
        sse_head()
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, stamp: &Stamp) -> Result<(), ClientGone> {
        write_event(
            writer,
            &self.envelope.chunk(self.object(&self.envelope.model, piece, None, stamp)).to_string(),
        )
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return write_error_event(writer, error),
        };
        let last = self.envelope.chunk(self.object(
            &answer.stored.model,
            "",
            Some(finish_reason(&answer.stored)),
            stamp,
        ));
        write_event(writer, &last.to_string())?;
        if self.envelope.include_usage {
            let mut usage_chunk = self.object(&answer.stored.model, "", None, stamp);
            usage_chunk["choices"] = json!([]);
            usage_chunk["usage"] = usage(outcome);
            write_event(writer, &usage_chunk.to_string())?;
        }
        write_event(writer, "[DONE]")
    }
}
