//! Ollama's generation routes: `POST /api/generate` and `POST /api/chat`,
//! as Ollama itself answers them (`server/routes.go`, `api/types.go`).
//!
//! - Streaming is the default when `stream` is absent: NDJSON, a line per
//!   piece, then a final line with `done: true`, `done_reason` and the
//!   counts. A failure before the first line is an HTTP error
//!   `{"error": ...}`; after it, an `{"error": ...}` line ends the stream.
//! - A request with an empty prompt (or no messages) loads the model, and
//!   with `keep_alive: 0` unloads it: passed to the backend as it came,
//!   never cached.
//! - Nothing the client left out is added: the model's own defaults apply,
//!   as at Ollama. `Cache-Control: no-cache` skips the cache.

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::Route;
use super::ollama_meta as meta;
use super::{
    bool_field, generation_request, images_field, now_rfc3339, object_body, serve_read, string_field,
};
use crate::backend::Kind;
use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::{CacheUse, Outcome};
use crate::question::{Family, Message, PromptParts, Question};
use crate::render::{with_cache_headers, write_line};
use crate::report;
use crate::serve::Framing;
use crate::stamp::Stamp;
use crate::stored::Durations;

/// Ollama's API.
pub const ROUTES: &[Route] = &[
    Route::exact("/", &["GET", "HEAD"], meta::index),
    Route::exact("/api/version", &["GET"], meta::version),
    Route::exact("/api/tags", &["GET"], meta::tags),
    Route::exact("/api/ps", &["GET"], meta::ps),
    Route::exact("/api/show", &["POST"], meta::show),
    Route::exact("/api/generate", &["POST"], generate),
    Route::exact("/api/chat", &["POST"], chat),
    Route::exact("/api/embed", &["POST"], meta::embed),
    Route::exact("/api/embeddings", &["POST"], meta::embed),
    Route::exact("/api/pull", &["POST"], meta::management),
    Route::exact("/api/push", &["POST"], meta::management),
    Route::exact("/api/create", &["POST"], meta::management),
    Route::exact("/api/copy", &["POST"], meta::management),
    Route::exact("/api/delete", &["DELETE"], meta::management),
    Route::prefix("/api/blobs/", &["HEAD", "POST"], meta::management),
];

/// POST /api/generate.
pub fn generate(request: &Request) -> Reply {
    answer(request, Family::Generate)
}

/// POST /api/chat.
pub fn chat(request: &Request) -> Reply {
    answer(request, Family::Chat)
}

fn answer(request: &Request, family: Family) -> Reply {
    let started = Instant::now();
    let parsed = object_body(request).and_then(|body| {
        let question = question(&body, family)?;
        let stream = bool_field(&body, "stream")?.unwrap_or(true);
        Ok((body, question, stream))
    });
    let (body, (question, prompt), stream) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            report::rejected(&error, started);
            return error.response().into();
        }
    };
    let empty = match family {
        Family::Generate => prompt.is_empty(),
        Family::Chat => question.messages.is_empty(),
    };
    if empty {
        return load_or_unload(request.path(), &body, family).into();
    }
    let read = generation_request(request, &body, question, prompt, stream).map(|generation| {
        let framing = OllamaFraming { family, model: generation.primary_model().to_string() };
        (generation, framing)
    });
    serve_read(request, started, read, ApiError::response)
}

/// The question in `body`, and the prompt the key and the logs see.
fn question(body: &Map<String, Value>, family: Family) -> Result<(Question, String), ApiError> {
    let mut question = Question::new(family);
    question.options = match body.get("options") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::Object(options)) => {
            super::ollama_options::check(options)?;
            options
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        }
        Some(_) => return Err(ApiError::invalid("options", "options must be an object")),
    };
    question.format = match body.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(format)) if format.is_empty() => None,
        Some(format @ (Value::String(_) | Value::Object(_))) => Some(format.clone()),
        Some(_) => return Err(ApiError::invalid("format", "format must be \"json\" or a JSON schema")),
    };
    question.think = body.get("think").filter(|think| !think.is_null()).cloned();
    // Ollama can answer with log probabilities; a cached answer holds none,
    // so asking for them is refused rather than answered without them.
    if body.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(ApiError::invalid("logprobs", "logprobs are not supported: a cached answer holds none"));
    }
    question.keep_alive = body.get("keep_alive").filter(|keep| !keep.is_null()).cloned();
    question.tools = match body.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(tools)) if tools.is_empty() => None,
        Some(tools @ Value::Array(_)) => Some(tools.clone()),
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let prompt = match family {
        Family::Generate => {
            question.prompt_parts = PromptParts {
                suffix: string_field(body, "suffix")?,
                system: string_field(body, "system")?,
                template: string_field(body, "template")?,
                raw: bool_field(body, "raw")?,
                context: body.get("context").filter(|context| !context.is_null()).cloned(),
                images: images_field(body, "images")?,
            };
            string_field(body, "prompt")?.unwrap_or_default()
        }
        Family::Chat => {
            question.messages = messages(body)?;
            let last_user = question.messages.iter().rev().find(|message| message.role == "user");
            last_user.map(|message| message.content.clone()).unwrap_or_default()
        }
    };
    Ok((question, prompt))
}

/// `messages`, each with a role; empty lists are absent.
fn messages(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let items = match body.get("messages") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid("messages", "messages must be a list")),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let field = |name: &str| format!("messages[{index}].{name}");
            let object = item.as_object().ok_or_else(|| {
                ApiError::invalid(&format!("messages[{index}]"), "a message must be an object")
            })?;
            let text = |name: &str| match object.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(ApiError::invalid(&field(name), format!("{} must be a string", field(name)))),
            };
            let role =
                text("role")?.ok_or_else(|| ApiError::invalid(&field("role"), "a message needs a role"))?;
            let tool_calls = match object.get("tool_calls") {
                Some(Value::Array(calls)) if !calls.is_empty() => Some(Value::Array(calls.clone())),
                _ => None,
            };
            Ok(Message {
                role,
                content: text("content")?.unwrap_or_default(),
                images: images_field(object, &field("images"))?,
                tool_calls,
                tool_name: text("tool_name")?,
                tool_call_id: None,
                thinking: text("thinking")?.filter(|thinking| !thinking.is_empty()),
            })
        })
        .collect()
}

/// A load or unload: to an Ollama backend as it came; an OpenAI-compatible
/// one has nothing to load, so the answer says done.
fn load_or_unload(path: &str, body: &Map<String, Value>, family: Family) -> Response {
    let backend = &Config::get().backend;
    if backend.kind() == Kind::Ollama {
        let mut forwarded = body.clone();
        // Ollama answers a load whole; a streamed one is a single line anyway.
        forwarded.insert("stream".into(), json!(false));
        return match backend.call("POST", path, Some(Value::Object(forwarded).to_string().as_bytes())) {
            Ok((status, bytes)) => Response::new(status, "application/json", bytes),
            Err(error) => error.response(),
        };
    }
    let model = body.get("model").cloned().unwrap_or(Value::Null);
    let unload = body.get("keep_alive").and_then(Value::as_f64) == Some(0.0);
    let mut answer = json!({
        "model": model,
        "created_at": now_rfc3339(),
        "done": true,
        "done_reason": if unload { "unload" } else { "load" },
    });
    match family {
        Family::Generate => answer["response"] = json!(""),
        Family::Chat => answer["message"] = json!({"role": "assistant", "content": ""}),
    }
    Response::json(200, &answer)
}

/// Ollama's NDJSON and JSON answers.
#[derive(Clone)]
struct OllamaFraming {
    family: Family,
    /// The model asked for, named on each streamed line.
    model: String,
}

impl OllamaFraming {
    /// A line or answer carrying `text`, in the family's field.
    fn carrying(&self, model: &str, text: &str, done: bool, stamp: &Stamp) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("model".into(), json!(model));
        body.insert("created_at".into(), stamp.now_rfc3339());
        match self.family {
            Family::Generate => body.insert("response".into(), json!(text)),
            Family::Chat => body.insert("message".into(), json!({"role": "assistant", "content": text})),
        };
        body.insert("done".into(), json!(done));
        body
    }

    /// The final fields: why it stopped and the counts (durations in ns).
    fn finished(&self, body: &mut Map<String, Value>, outcome: &Outcome, stamp: &Stamp) {
        let Ok(answer) = outcome else { return };
        let stored = &answer.stored;
        let Durations { total_ns, prompt_eval_ns, eval_ns } = stored.durations;
        // This request's time for a fresh answer; a cached one reports the
        // generation it replays (tokens per second must describe the model,
        // not the cache), where the backend said.
        let total = match (answer.cache_use, total_ns.or(prompt_eval_ns.zip(eval_ns).map(|(p, e)| p + e))) {
            (CacheUse::Hit | CacheUse::Stale, Some(original)) => json!(original),
            _ => stamp.elapsed_ns(),
        };
        body.insert("done_reason".into(), json!(stored.done_reason.as_deref().unwrap_or("stop")));
        body.insert("total_duration".into(), total.clone());
        body.insert("load_duration".into(), json!(0));
        body.insert("prompt_eval_count".into(), json!(stored.prompt_tokens.unwrap_or(0)));
        if let Some(prompt_eval_ns) = prompt_eval_ns {
            body.insert("prompt_eval_duration".into(), json!(prompt_eval_ns));
        }
        body.insert("eval_count".into(), json!(stored.tokens_generated));
        body.insert("eval_duration".into(), eval_ns.map_or(total, |eval_ns| json!(eval_ns)));
        if let (Some(calls), Some(message)) = (&stored.tool_calls, body.get_mut("message")) {
            message["tool_calls"] = calls.clone();
        }
        if let Some(thinking) = &stored.thinking {
            match body.get_mut("message") {
                Some(message) => message["thinking"] = json!(thinking),
                None => {
                    body.insert("thinking".into(), json!(thinking));
                }
            }
        }
    }
}

impl Framing for OllamaFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        match outcome {
            Ok(answer) => {
                let mut body = self.carrying(&answer.stored.model, &answer.stored.response, true, stamp);
                self.finished(&mut body, outcome, stamp);
                with_cache_headers(Response::json(200, &body), answer.cache_use, answer.age_s)
            }
            Err(error) => error.response(),
        }
    }

    fn stream_head(&self) -> Response {
        Response::new(200, "application/x-ndjson", Vec::new())
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, stamp: &Stamp) -> Result<(), ClientGone> {
        let line = self.carrying(&self.model, piece, false, stamp);
        write_line(writer, &Value::Object(line))
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        let line = match outcome {
            Ok(answer) => {
                let mut line = self.carrying(&answer.stored.model, "", true, stamp);
                self.finished(&mut line, outcome, stamp);
                line
            }
            Err(error) => {
                let mut line = Map::new();
                line.insert("error".into(), json!(error.message()));
                line
            }
        };
        write_line(writer, &Value::Object(line))
    }
}
