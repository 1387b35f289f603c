//! What OpenAI's two generation routes (`/v1/chat/completions` and the
//! legacy `/v1/completions`) share: the sampling parameters in Ollama's
//! option names with OpenAI's defaults, the parameters refused by name,
//! `usage` and `finish_reason`, the error shape, and server-sent events.
//!
//! Defaults: OpenAI's own, temperature 1 and top_p 1 when absent, sent
//! explicitly so the answer is the same over either backend protocol (the
//! seed's 0.8 and 0.9 are for `/generate`; Ollama's dialect adds nothing).

use std::collections::BTreeMap;
use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::{bool_field, generation_request, object_body, serve_read};
use crate::backend::Kind;
use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::question::Question;
use crate::serve::Framing;
use crate::stored::Stored;

/// OpenAI's default temperature and top_p.
const OPENAI_DEFAULT_TEMPERATURE: f64 = 1.0;
const OPENAI_DEFAULT_TOP_P: f64 = 1.0;
/// OpenAI takes at most four stop sequences.
const MAX_STOP: usize = 4;

/// The sampling parameters in `body`, as Ollama options.
pub fn sampling_options(body: &Map<String, Value>) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut options = BTreeMap::new();
    options.insert(
        "temperature".into(),
        number(body, "temperature", 0.0, 2.0)?.unwrap_or(json!(OPENAI_DEFAULT_TEMPERATURE)),
    );
    options.insert("top_p".into(), number(body, "top_p", 0.0, 1.0)?.unwrap_or(json!(OPENAI_DEFAULT_TOP_P)));
    for name in ["presence_penalty", "frequency_penalty"] {
        if let Some(value) = number(body, name, -2.0, 2.0)? {
            options.insert(name.into(), value);
        }
    }
    let max_tokens = match body.get("max_completion_tokens").filter(|value| !value.is_null()) {
        Some(value) => Some(("max_completion_tokens", value)),
        None => body.get("max_tokens").filter(|value| !value.is_null()).map(|value| ("max_tokens", value)),
    };
    if let Some((field, value)) = max_tokens {
        let tokens = value.as_u64().filter(|tokens| *tokens >= 1).ok_or_else(|| {
            ApiError::invalid(field, format!("{field} must be a whole number of at least 1"))
        })?;
        options.insert("num_predict".into(), json!(tokens));
    }
    if let Some(seed) = body.get("seed").filter(|seed| !seed.is_null()) {
        let seed = seed.as_i64().ok_or_else(|| ApiError::invalid("seed", "seed must be an integer"))?;
        options.insert("seed".into(), json!(seed));
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(stop)) => {
            options.insert("stop".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if stops.len() <= MAX_STOP && stops.iter().all(Value::is_string) => {
            options.insert("stop".into(), json!(stops));
        }
        Some(_) => {
            return Err(ApiError::invalid("stop", "stop must be a string or a list of at most 4 strings"));
        }
    }
    Ok(options)
}

/// `response_format` as Ollama's `format` (`"json"`, a schema, or none),
/// and a schema's `name` and `strict` as the question's `format_meta`.
pub fn read_response_format(body: &Map<String, Value>, question: &mut Question) -> Result<(), ApiError> {
    question.format = response_format(body)?;
    let schema = body.get("response_format").and_then(|format| format.get("json_schema"));
    if question.format.as_ref().is_some_and(Value::is_object)
        && let Some(schema) = schema
    {
        let mut meta = Map::new();
        for field in ["name", "strict"] {
            if let Some(value) = schema.get(field).filter(|value| !value.is_null()) {
                meta.insert(field.into(), value.clone());
            }
        }
        question.format_meta = (!meta.is_empty()).then_some(Value::Object(meta));
    }
    Ok(())
}

/// `tool_choice` applied to the question's tools: `auto` changes nothing,
/// `none` offers none, a named function offers that one alone and is
/// relayed; `required` is relayed to an OpenAI-compatible backend (Ollama
/// has no way to force a call, so there it is refused).
pub fn apply_tool_choice(body: &Map<String, Value>, question: &mut Question) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::invalid("tool_choice", why));
    match body.get("tool_choice") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(choice)) if choice == "auto" => Ok(()),
        Some(Value::String(choice)) if choice == "none" => {
            question.tools = None;
            Ok(())
        }
        Some(choice @ Value::String(required)) if required == "required" => {
            if Config::get().backend.kind() == Kind::Ollama {
                return refuse(
                    "tool_choice \"required\" cannot be honoured: an Ollama backend cannot force a call",
                );
            }
            question.tool_choice = Some(choice.clone());
            Ok(())
        }
        Some(choice @ Value::Object(_)) => {
            let Some(name) = choice.pointer("/function/name").and_then(Value::as_str) else {
                return refuse(
                    "tool_choice must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}",
                );
            };
            let offered = question.tools.as_ref().and_then(Value::as_array).into_iter().flatten();
            let named: Vec<Value> = offered
                .filter(|tool| tool.pointer("/function/name").and_then(Value::as_str) == Some(name))
                .cloned()
                .collect();
            if named.is_empty() {
                return refuse(&format!("tool_choice names '{name}', which is not in tools"));
            }
            question.tools = Some(Value::Array(named));
            question.tool_choice = Some(choice.clone());
            Ok(())
        }
        Some(_) => refuse("tool_choice must be auto, none, required or a named function"),
    }
}

/// A reasoning effort (`reasoning_effort`, the Responses API's
/// `reasoning.effort`) as Ollama's `think`: `none` and `minimal` turn
/// thinking off, `low`, `medium` and `high` are passed as the level.
pub fn effort_as_think(effort: Option<&Value>, field: &str) -> Result<Option<Value>, ApiError> {
    match effort {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(effort)) if effort == "none" || effort == "minimal" => Ok(Some(json!(false))),
        Some(Value::String(effort)) if ["low", "medium", "high"].contains(&effort.as_str()) => {
            Ok(Some(json!(effort)))
        }
        Some(_) => {
            Err(ApiError::invalid(field, format!("{field} must be none, minimal, low, medium or high")))
        }
    }
}

/// `response_format` as Ollama's `format`: `"json"`, a schema, or none.
fn response_format(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let format =
        match body.get("response_format").and_then(|format| format.get("type")).and_then(Value::as_str) {
            None | Some("text") => None,
            Some("json_object") => Some(json!("json")),
            Some("json_schema") => Some(
                body.get("response_format")
                    .and_then(|format| format.pointer("/json_schema/schema"))
                    .cloned()
                    .ok_or_else(|| ApiError::invalid("response_format", "json_schema needs a schema"))?,
            ),
            Some(other) => {
                return Err(ApiError::invalid(
                    "response_format",
                    format!("unknown response_format type '{other}'"),
                ));
            }
        };
    Ok(format)
}

/// Parameters that would change the answer in ways no backend here can
/// honour: refused by name rather than silently ignored.
pub fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), ApiError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "n must be 1: one choice per request"));
    }
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }
    if body.get("logit_bias").and_then(Value::as_object).is_some_and(|bias| !bias.is_empty()) {
        return Err(ApiError::invalid("logit_bias", "logit_bias is not supported"));
    }
    Ok(())
}

/// An optional number in [low, high].
fn number(body: &Map<String, Value>, name: &str, low: f64, high: f64) -> Result<Option<Value>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(number) if (low..=high).contains(&number) => Ok(Some(value.clone())),
            _ => Err(ApiError::invalid(name, format!("{name} must be a number between {low} and {high}"))),
        },
    }
}

/// An error in OpenAI's shape.
pub fn error_response(error: &ApiError) -> Response {
    let status = error.status();
    let (kind, code, param) = match error {
        ApiError::Invalid { field, .. } => ("invalid_request_error", Value::Null, json!(field)),
        ApiError::MalformedJson { .. } => ("invalid_request_error", Value::Null, Value::Null),
        ApiError::ModelNotFound { .. } => ("invalid_request_error", json!("model_not_found"), json!("model")),
        ApiError::PluginRefused { .. } => ("invalid_request_error", Value::Null, Value::Null),
        ApiError::BackendRefused { .. } if error.is_context_overflow() => {
            ("invalid_request_error", json!("context_length_exceeded"), json!("messages"))
        }
        ApiError::BackendRefused { .. } => ("invalid_request_error", Value::Null, Value::Null),
        _ => ("server_error", json!(error.kind()), Value::Null),
    };
    let body = json!({"error": {"message": error.message(), "type": kind, "param": param, "code": code}});
    let mut response = Response::json(status, &body);
    if let Some(seconds) = error.parts().retry_after_s {
        response = response.with_header("retry-after", &seconds.to_string());
    }
    response
}

/// `usage` for an answer.
pub fn usage(outcome: &Outcome) -> Value {
    let Ok(answer) = outcome else { return Value::Null };
    let prompt = answer.stored.prompt_tokens.unwrap_or(0);
    let completion = answer.stored.tokens_generated;
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// OpenAI's `finish_reason` for an answer: `tool_calls` when it calls
/// tools (Ollama says `stop` then), else from Ollama's or OpenAI's ending.
pub fn finish_reason(stored: &Stored) -> &'static str {
    if stored.tool_calls.is_some() {
        return "tool_calls";
    }
    match stored.done_reason.as_deref() {
        Some("length") => "length",
        _ => "stop",
    }
}

/// What every OpenAI answer carries: its id and time, the model asked for,
/// and whether a stream ends with a usage chunk.
#[derive(Clone)]
pub struct Envelope {
    /// How its id starts (`chatcmpl-`, `cmpl-`); the rest is the stamp's.
    pub id_prefix: &'static str,
    pub model: String,
    pub include_usage: bool,
}

impl Envelope {
    /// A stream chunk as OpenAI sends it: with `usage: null` before the
    /// usage chunk when the client asked for one (`include_usage`).
    pub fn chunk(&self, mut chunk: Value) -> Value {
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

/// Reads a route's body into its question and the prompt the key hashes.
pub type ReadQuestion = fn(&Map<String, Value>) -> Result<(Question, String), ApiError>;

/// The head of a server-sent event stream.
pub fn sse_head() -> Response {
    Response::new(200, "text/event-stream", Vec::new()).with_header("cache-control", "no-cache")
}

/// Answers an OpenAI generation route: `question` reads the body, the
/// pipeline runs, `framing` frames the answer (ids start `id_prefix`).
pub fn answer<F: Framing>(
    request: &Request,
    id_prefix: &'static str,
    question: ReadQuestion,
    framing: impl FnOnce(Envelope) -> F,
) -> Reply {
    let started = Instant::now();
    let read = object_body(request).and_then(|body| {
        let stream = bool_field(&body, "stream")?.unwrap_or(false);
        let include_usage = body.get("stream_options").and_then(|options| options.get("include_usage"))
            == Some(&Value::Bool(true));
        let (question, prompt) = question(&body)?;
        let generation = generation_request(request, &body, question, prompt, stream)?;
        let envelope = Envelope { id_prefix, model: generation.primary_model().to_string(), include_usage };
        Ok((generation, framing(envelope)))
    });
    serve_read(request, started, read, error_response)
}

/// The event that ends a stream with `error`.
pub fn write_error_event(writer: &mut BodyWriter, error: &ApiError) -> Result<(), ClientGone> {
    let error = json!({"error": {"message": error.message(), "type": "server_error", "code": error.kind()}});
    write_event(writer, &error.to_string())
}

/// One server-sent event.
pub fn write_event(writer: &mut BodyWriter, data: &str) -> Result<(), ClientGone> {
    writer.write(format!("data: {data}\n\n").as_bytes())
}
