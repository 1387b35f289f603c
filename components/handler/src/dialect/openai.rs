//! OpenAI's `POST /v1/chat/completions`, as the OpenAI SDKs expect it:
//! a `chat.completion` object, or with `stream: true` server-sent events
//! (`chat.completion.chunk`s, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`). Errors are
//! `{"error": {"message", "type", "param", "code"}}`, with the status the
//! SDKs turn into their own error types (404 → `NotFoundError`).
//!
//! Defaults: OpenAI's own, temperature 1 and top_p 1 when absent, sent
//! explicitly so the answer is the same over either backend protocol (the
//! seed's 0.8 and 0.9 are for `/generate`; Ollama's dialect adds nothing).

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::{answer_id, cache_bypassed, generation_request, now_unix, object_body, string_field};
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::question::{Family, Message, Question};
use crate::render::with_cache_headers;
use crate::report;
use crate::serve::{self, Framing};

/// OpenAI's default temperature and top_p.
const OPENAI_DEFAULT_TEMPERATURE: f64 = 1.0;
const OPENAI_DEFAULT_TOP_P: f64 = 1.0;
/// OpenAI takes at most four stop sequences.
const MAX_STOP: usize = 4;

/// POST /v1/chat/completions.
pub fn chat_completions(request: &Request) -> Reply {
    let started = Instant::now();
    let parsed = object_body(request).and_then(|body| {
        let stream = matches!(body.get("stream"), Some(Value::Bool(true)));
        let include_usage = body.get("stream_options").and_then(|options| options.get("include_usage"))
            == Some(&Value::Bool(true));
        let (question, prompt) = question(&body)?;
        let model = string_field(&body, "model")?;
        let generation = generation_request(question, prompt, model, stream, !cache_bypassed(request))?;
        Ok((generation, include_usage))
    });
    match parsed {
        Ok((generation, include_usage)) => {
            let framing = OpenAiFraming {
                id: answer_id("chatcmpl-"),
                created: now_unix(),
                model: generation.primary_model().to_string(),
                include_usage,
                role_sent: false,
            };
            serve::answer(generation, framing, started)
        }
        Err(error) => {
            report::rejected(&error, started);
            error_response(&error).into()
        }
    }
}

/// The question in `body`, and the last user message (what the key's
/// prompt hash and the logs see).
fn question(body: &Map<String, Value>) -> Result<(Question, String), ApiError> {
    let mut question = Question::new(Family::Chat);
    question.messages = messages(body)?;
    if question.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    }
    let options = &mut question.options;
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
    question.format =
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
    question.tools =
        body.get("tools").filter(|tools| tools.as_array().is_some_and(|tools| !tools.is_empty())).cloned();
    refuse_unsupported(body)?;
    let last_user = question.messages.iter().rev().find(|message| message.role == "user");
    let prompt = last_user.map(|message| message.content.clone()).unwrap_or_default();
    Ok((question, prompt))
}

/// Parameters that would change the answer in ways no backend here can
/// honour: refused by name rather than silently ignored.
fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), ApiError> {
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "n must be 1: one choice per request"));
    }
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported"));
    }
    if body.get("logit_bias").and_then(Value::as_object).is_some_and(|bias| !bias.is_empty()) {
        return Err(ApiError::invalid("logit_bias", "logit_bias is not supported"));
    }
    match body.get("tool_choice") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(choice)) if choice == "auto" => Ok(()),
        Some(_) => Err(ApiError::invalid("tool_choice", "only tool_choice \"auto\" is supported")),
    }
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

/// `messages` in the neutral form: text parts joined, data-URL images as
/// base64, `developer` as `system`, tool calls with parsed arguments.
fn messages(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) = body.get("messages") else {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = |name: &str| format!("messages[{index}].{name}");
            let role = item.get("role").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(&at("role"), "a message needs a role"))?;
            let role = if role == "developer" { "system" } else { role };
            let mut message = Message { role: role.to_string(), ..Message::default() };
            match item.get("content") {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => message.content = text.clone(),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        match part.get("type").and_then(Value::as_str) {
                            Some("text") => message.content.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
                            Some("image_url") => {
                                let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                                let data = url.split_once(";base64,").map(|(_, data)| data).ok_or_else(|| {
                                    ApiError::invalid(&at("content"), "images must be data: URLs (base64); this service fetches nothing")
                                })?;
                                message.images.push(data.to_string());
                            }
                            _ => return Err(ApiError::invalid(&at("content"), "content parts must be text or image_url")),
                        }
                    }
                }
                Some(_) => return Err(ApiError::invalid(&at("content"), "content must be a string or a list of parts")),
            }
            if let Some(Value::Array(calls)) = item.get("tool_calls").filter(|calls| calls.as_array().is_some_and(|calls| !calls.is_empty())) {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|call| {
                        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        let arguments = serde_json::from_str::<Value>(arguments).unwrap_or(json!({}));
                        json!({"function": {"name": call.pointer("/function/name").cloned().unwrap_or_default(), "arguments": arguments}})
                    })
                    .collect();
                message.tool_calls = Some(Value::Array(calls));
            }
            message.tool_name = item.get("name").and_then(Value::as_str).map(str::to_string);
            Ok(message)
        })
        .collect()
}

/// An error in OpenAI's shape.
pub fn error_response(error: &ApiError) -> Response {
    let status = error.status();
    let (kind, code, param) = match error {
        ApiError::Invalid { field, .. } => ("invalid_request_error", Value::Null, json!(field)),
        ApiError::MalformedJson { .. } => ("invalid_request_error", Value::Null, Value::Null),
        ApiError::ModelNotFound { .. } => ("invalid_request_error", json!("model_not_found"), json!("model")),
        ApiError::PluginRefused { .. } => ("invalid_request_error", Value::Null, Value::Null),
        _ => ("server_error", json!(error.kind()), Value::Null),
    };
    let body = json!({"error": {"message": error.message(), "type": kind, "param": param, "code": code}});
    let mut response = Response::json(status, &body);
    if let Some(seconds) = error.parts().retry_after_s {
        response = response.with_header("retry-after", &seconds.to_string());
    }
    response
}

/// `chat.completion` objects and their chunks.
struct OpenAiFraming {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
}

impl OpenAiFraming {
    fn chunk(&self, model: &str, choices: Value) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": model, "system_fingerprint": null, "choices": choices})
    }
}

/// `usage` for an answer.
fn usage(outcome: &Outcome) -> Value {
    let Ok(answer) = outcome else { return Value::Null };
    let prompt = answer.stored.prompt_tokens.unwrap_or(0);
    let completion = answer.stored.tokens_generated;
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// OpenAI's `finish_reason` for Ollama's or OpenAI's ending.
fn finish_reason(done_reason: Option<&str>) -> &'static str {
    match done_reason {
        Some("length") => "length",
        Some("tool_calls") => "tool_calls",
        _ => "stop",
    }
}

impl Framing for OpenAiFraming {
    fn whole(&self, outcome: &Outcome, _started: Instant) -> Response {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return error_response(error),
        };
        let body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": answer.stored.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer.stored.response},
                "logprobs": null,
                "finish_reason": finish_reason(answer.stored.done_reason.as_deref()),
            }],
            "usage": usage(outcome),
        });
        with_cache_headers(Response::json(200, &body), answer.cache_use, answer.age_s)
    }

    fn error(&self, error: &ApiError) -> Response {
        error_response(error)
    }

    fn stream_head(&self) -> Response {
        Response::new(200, "text/event-stream", Vec::new()).with_header("cache-control", "no-cache")
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str) -> Result<(), ClientGone> {
        let delta = if self.role_sent {
            json!({"content": piece})
        } else {
            self.role_sent = true;
            json!({"role": "assistant", "content": piece})
        };
        let chunk = self.chunk(
            &self.model,
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
        );
        write_event(writer, &chunk.to_string())
    }

    fn end(
        &mut self,
        writer: &mut BodyWriter,
        outcome: &Outcome,
        _started: Instant,
    ) -> Result<(), ClientGone> {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                let error = json!({"error": {"message": error.message(), "type": "server_error", "code": error.kind()}});
                return write_event(writer, &error.to_string());
            }
        };
        let reason = finish_reason(answer.stored.done_reason.as_deref());
        let last = self.chunk(
            &answer.stored.model,
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
        );
        write_event(writer, &last.to_string())?;
        if self.include_usage {
            let mut usage_chunk = self.chunk(&answer.stored.model, json!([]));
            usage_chunk["usage"] = usage(outcome);
            write_event(writer, &usage_chunk.to_string())?;
        }
        write_event(writer, "[DONE]")
    }
}

fn write_event(writer: &mut BodyWriter, data: &str) -> Result<(), ClientGone> {
    writer.write(format!("data: {data}\n\n").as_bytes())
}
