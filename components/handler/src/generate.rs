//! POST /generate: validate, merge settings, ask the backend (falling back
//! through FALLBACK_MODELS), answer in the seed's shape, whole or streamed
//! as NDJSON.

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, Reply, Request, Response};
use llm_service_sdk::outbound::Pending;
use llm_service_sdk::runtime;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::backend::{Backend, Completion, Generation, StreamEvent};
use crate::error::ApiError;
use crate::settings::Settings;

/// Longest prompt accepted unless MAX_PROMPT_CHARS says otherwise.
const DEFAULT_MAX_PROMPT_CHARS: usize = 32768;

/// A validated generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt: String,
    // Validated now; the response cache's key and the request log read them.
    #[allow(dead_code)]
    pub character_name: Option<String>,
    #[allow(dead_code)]
    pub conversation_id: Option<String>,
    #[allow(dead_code)]
    pub use_cache: bool,
    pub model: Option<String>,
    pub stream: bool,
    pub settings: Settings,
}

impl GenerateRequest {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|error| ApiError::MalformedJson {
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        })?;
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
            conversation_id: optional_string(object, "conversation_id", prefix)?,
            use_cache: optional_bool(object, "use_cache", prefix)?.unwrap_or(true),
            model: optional_string(object, "model", prefix)?.filter(|model| !model.trim().is_empty()),
            stream: optional_bool(object, "stream", prefix)?.unwrap_or(false),
            settings,
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
        Generation { model, prompt: &self.prompt, settings: &self.settings }
    }

    /// The seed's response for `completion` of the model `model`.
    pub fn response_body(
        &self,
        completion: &Completion,
        model: &str,
        started: Instant,
    ) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("response".into(), json!(completion.text));
        body.insert("model".into(), json!(model));
        body.insert("generation_time".into(), json!(started.elapsed().as_secs_f64()));
        body.insert("cache_hit".into(), json!(false));
        body.insert(
            "metadata".into(),
            json!({
                "temperature": self.settings.temperature,
                "tokens_generated": completion.tokens_generated,
                "prompt_hash": hex::encode(Sha256::digest(self.prompt.as_bytes())),
            }),
        );
        body
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
fn worth_a_fallback(error: &ApiError) -> bool {
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

/// POST /generate.
pub fn post(request: &Request) -> Reply {
    let started = Instant::now();
    let parsed = match GenerateRequest::parse(request.body()) {
        Ok(parsed) => parsed,
        Err(error) => return error.response().into(),
    };
    let backend = Backend::from_env();
    if parsed.stream {
        return stream(backend, parsed, started);
    }
    let first = backend.start(&parsed.generation(&parsed.models()[0]), false);
    match complete(&backend, &parsed, first) {
        Ok((completion, model)) => {
            Response::json(200, &parsed.response_body(&completion, &model, started)).into()
        }
        Err(error) => error.response().into(),
    }
}

/// Streams the answer as NDJSON. The stream is opened (with fallbacks)
/// before the status line goes out, so a missing model or a dead backend is
/// still a proper 404/503; after that, an error ends the stream with an
/// `{"error": ...}` line. A client that leaves drops the backend response,
/// which closes the backend connection and so cancels the generation.
fn stream(backend: Backend, request: GenerateRequest, started: Instant) -> Reply {
    let mut first_error = None;
    let mut opened = None;
    for model in request.models() {
        let generation = request.generation(&model);
        match backend.start(&generation, true).and_then(|pending| backend.open_stream(&generation, pending)) {
            Ok(response) => {
                opened = Some((response, model));
                break;
            }
            Err(error) => {
                let fall_back = worth_a_fallback(&error);
                first_error.get_or_insert(error);
                if !fall_back {
                    break;
                }
            }
        }
    }
    let Some((mut response, model)) = opened else {
        return first_error.expect("at least one model was tried").response().into();
    };
    let head = Response::new(200, "application/x-ndjson", Vec::new());
    Reply::Stream {
        head,
        write: Box::new(move |writer: &mut BodyWriter| {
            let mut completion =
                Completion { text: String::new(), model: model.clone(), tokens_generated: 0 };
            let mut chunks = 0u64;
            loop {
                let event = match response.next_line() {
                    Ok(Some(line)) => backend.stream_event(&line),
                    Ok(None) => {
                        Err(ApiError::BadGateway { message: "the stream ended before it was done".into() })
                    }
                    Err(error) => Err(crate::backend::map_outbound(error)),
                };
                let line = match event {
                    Ok(StreamEvent::Skip) => continue,
                    Ok(StreamEvent::Text(text)) => {
                        chunks += 1;
                        completion.text.push_str(&text);
                        json!({"response": text, "done": false})
                    }
                    Ok(StreamEvent::Done { tokens_generated }) => {
                        completion.tokens_generated = tokens_generated.unwrap_or(chunks);
                        let mut last = request.response_body(&completion, &model, started);
                        last.insert("done".into(), json!(true));
                        let _ = write_line(writer, &Value::Object(last));
                        return;
                    }
                    Err(error) => {
                        let mut last = error.body();
                        last.insert("done".into(), json!(true));
                        let _ = write_line(writer, &Value::Object(last));
                        return;
                    }
                };
                if write_line(writer, &line).is_err() {
                    return;
                }
            }
        }),
    }
}

fn write_line(writer: &mut BodyWriter, value: &Value) -> Result<(), llm_service_sdk::http::ClientGone> {
    let mut line = value.to_string();
    line.push('\n');
    writer.write(line.as_bytes())
}
