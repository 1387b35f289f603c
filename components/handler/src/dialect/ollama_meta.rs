//! Ollama's other routes: `GET/HEAD /` ("Ollama is running", which clients
//! use as a liveness probe), `GET /api/version`, `GET /api/tags`,
//! `GET /api/ps`, `POST /api/show`, `POST /api/embed` and the legacy
//! `POST /api/embeddings`; and model management, which this service does
//! not do.
//!
//! Against an Ollama backend these are its own answers (listings reused for
//! a few seconds); against an OpenAI-compatible one they are translated
//! from `/v1/models` and `/v1/embeddings`.

use std::time::{Duration, SystemTime};

use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Value, json};

use super::{LISTING_FRESH_S, LOADED_FRESH_S, object_body, short_cached};
use crate::backend::{Kind, error_from_status};
use crate::config::Config;
use crate::error::ApiError;

/// The Ollama API version this service speaks, reported when the backend
/// is not an Ollama that can report its own.
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// GET / and HEAD /: what Ollama answers.
pub fn index(_request: &Request) -> Reply {
    Response::new(200, "text/plain; charset=utf-8", b"Ollama is running".to_vec()).into()
}

/// GET /api/version.
pub fn version(_request: &Request) -> Reply {
    let backend = &Config::get().backend;
    if backend.kind() == Kind::Ollama
        && let Ok((200, body)) = backend.call("GET", "/api/version", None)
    {
        return Response::new(200, "application/json", body).into();
    }
    Response::json(200, &json!({ "version": OLLAMA_API_VERSION })).into()
}

/// GET /api/tags: the backend's models.
pub fn tags(_request: &Request) -> Reply {
    respond(tags_body())
}

/// The `/api/tags` body: Ollama's own, or `/v1/models` translated.
pub fn tags_body() -> Result<Vec<u8>, ApiError> {
    let backend = &Config::get().backend;
    short_cached("tags", LISTING_FRESH_S, || match backend.kind() {
        Kind::Ollama => ok_body(backend.call("GET", "/api/tags", None)?),
        Kind::OpenAi => Ok(json!({ "models": listed_as_ollama()? }).to_string().into_bytes()),
    })
}

/// An OpenAI-compatible server's models as Ollama lists them, with what
/// the server tells: the size, parameter count and quantization from
/// llama.cpp's `meta`, the time from `created`. No server here gives a
/// digest: it stays empty.
fn listed_as_ollama() -> Result<Vec<Value>, ApiError> {
    let models = Config::get().backend.list_models()?;
    Ok(models
        .iter()
        .map(|model| {
            let meta = &model.listed["meta"];
            let created = model.listed["created"].as_u64().unwrap_or(0);
            let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(created);
            let parameters = meta["n_params"].as_f64().map(parameter_size).unwrap_or_default();
            json!({
                "name": model.name,
                "model": model.name,
                "modified_at": humantime::format_rfc3339_seconds(modified).to_string(),
                "size": model.size_bytes.unwrap_or(0),
                "digest": "",
                "details": {
                    "format": "gguf", "family": "", "parameter_size": parameters,
                    "quantization_level": meta["ftype"].as_str().unwrap_or_default(),
                },
            })
        })
        .collect())
}

/// A parameter count as Ollama writes it: `134.5M`, `8.0B`.
fn parameter_size(count: f64) -> String {
    if count >= 1e9 { format!("{:.1}B", count / 1e9) } else { format!("{:.1}M", count / 1e6) }
}

/// `model`'s digest in the (short-cached) `/api/tags` listing of an Ollama
/// backend; `None` for an OpenAI-compatible one (no digests there), a
/// model not listed, or a listing that failed (then the key names the
/// model only, and the generation reports any real problem itself).
pub fn digest_of(model: &str) -> Option<String> {
    if Config::get().backend.kind() != Kind::Ollama {
        return None;
    }
    let listing: Value = serde_json::from_slice(&tags_body().ok()?).ok()?;
    let latest = format!("{model}:latest");
    listing.get("models")?.as_array()?.iter().find_map(|entry| {
        let name = entry.get("name").and_then(Value::as_str)?;
        (name == model || name == latest).then(|| entry.get("digest")?.as_str().map(str::to_string))?
    })
}

/// GET /api/ps: the models loaded now (none an OpenAI-compatible server reports).
pub fn ps(_request: &Request) -> Reply {
    let backend = &Config::get().backend;
    respond(short_cached("ps", LOADED_FRESH_S, || match backend.kind() {
        Kind::Ollama => ok_body(backend.call("GET", "/api/ps", None)?),
        // Such a server serves the models it lists: they count as loaded.
        Kind::OpenAi => {
            let loaded: Vec<Value> = listed_as_ollama()?
                .into_iter()
                .map(|mut model| {
                    model["size_vram"] = json!(0);
                    model["expires_at"] = json!("0001-01-01T00:00:00Z");
                    model
                })
                .collect();
            Ok(json!({ "models": loaded }).to_string().into_bytes())
        }
    }))
}

/// POST /api/show: `model`, or the deprecated `name` that Continue and
/// Open WebUI still send.
pub fn show(request: &Request) -> Reply {
    let answer = object_body(request).and_then(|mut body| {
        let model = match (body.get("model"), body.get("name")) {
            (Some(Value::String(model)), _) | (None, Some(Value::String(model))) => model.clone(),
            _ => return Err(ApiError::invalid("model", "model is required")),
        };
        body.remove("name");
        body.insert("model".into(), json!(model));
        let backend = &Config::get().backend;
        match backend.kind() {
            Kind::Ollama => {
                let (status, bytes) = backend.call("POST", "/api/show", Some(Value::Object(body).to_string().as_bytes()))?;
                Ok(Response::new(status, "application/json", bytes))
            }
            Kind::OpenAi => match backend.find_model(&model)? {
                Some(_) => Ok(Response::json(
                    200,
                    &json!({
                        "modelfile": "",
                        "parameters": "",
                        "template": "",
                        "details": {"format": "gguf", "family": "", "parameter_size": "", "quantization_level": ""},
                        "model_info": {},
                        "capabilities": ["completion"],
                    }),
                )),
                None => Err(ApiError::ModelNotFound { model }),
            },
        }
    });
    match answer {
        Ok(response) => response.into(),
        Err(error) => error.response().into(),
    }
}

/// POST /api/embed (`input`: a string or a list) and the legacy POST
/// /api/embeddings (`prompt`: one string). Not cached.
pub fn embed(request: &Request) -> Reply {
    let legacy = request.path() == "/api/embeddings";
    let answer = object_body(request).and_then(|body| {
        let backend = &Config::get().backend;
        if backend.kind() == Kind::Ollama {
            let (status, bytes) = backend.call("POST", request.path(), Some(request.body()))?;
            return Ok(Response::new(status, "application/json", bytes));
        }
        let input = if legacy { body.get("prompt") } else { body.get("input") };
        let input = input.cloned().ok_or_else(|| {
            let field = if legacy { "prompt" } else { "input" };
            ApiError::invalid(field, format!("{field} is required"))
        })?;
        let model = body.get("model").cloned().unwrap_or(Value::Null);
        let mut asked = json!({"model": model, "input": input});
        if let Some(dimensions) = body.get("dimensions").filter(|dimensions| !dimensions.is_null()) {
            asked["dimensions"] = dimensions.clone();
        }
        let (status, bytes) = backend.call("POST", "/v1/embeddings", Some(asked.to_string().as_bytes()))?;
        if status != 200 {
            // The server's OpenAI-shaped error, in Ollama's shape.
            return Err(error_from_status(status, &bytes, model.as_str().unwrap_or_default()));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::BadGateway { message: format!("unreadable embeddings: {error}") })?;
        let vectors: Vec<Value> = answer
            .get("data")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(|item| item.get("embedding").cloned()).collect())
            .unwrap_or_default();
        let body = if legacy {
            json!({"embedding": vectors.first().cloned().unwrap_or(json!([]))})
        } else {
            let prompt_tokens = answer.pointer("/usage/prompt_tokens").cloned().unwrap_or(json!(0));
            json!({"model": model, "embeddings": vectors, "prompt_eval_count": prompt_tokens})
        };
        Ok(Response::json(200, &body))
    });
    match answer {
        Ok(response) => response.into(),
        Err(error) => error.response().into(),
    }
}

/// Model management (`/api/pull`, `/api/push`, `/api/create`, `/api/copy`,
/// `DELETE /api/delete`, `/api/blobs/...`): off unless the operator set
/// ALLOW_MODEL_MANAGEMENT, so a client pointed at the gateway never changes
/// what the fleet's backends hold by accident. On, it goes to an Ollama
/// backend untouched, and its answer (pull progress is NDJSON) streams back
/// as it comes, within REQUEST_TIMEOUT.
pub fn management(request: &Request) -> Reply {
    let refused = |status: u16, why: &str| {
        let message = format!("{} {}: {why}", request.method(), request.path());
        Reply::from(Response::json(status, &json!({ "error": message })))
    };
    if std::env::var("ALLOW_MODEL_MANAGEMENT").as_deref() != Ok("true") {
        return refused(
            403,
            "model management through llm-service is off; set ALLOW_MODEL_MANAGEMENT=true to pass it to the backend, or do it on the model server itself",
        );
    }
    let backend = &Config::get().backend;
    if backend.kind() != Kind::Ollama {
        return refused(501, "the backend is not an Ollama (BACKEND_KIND); it has no model management API");
    }
    let body = (!request.body().is_empty()).then_some(request.body());
    let mut answer = match backend.open(request.method(), request.path(), body) {
        Ok(answer) => answer,
        Err(error) => return error.response().into(),
    };
    let content_type = match request.path() {
        "/api/pull" | "/api/push" | "/api/create" => "application/x-ndjson",
        _ => "application/json",
    };
    Reply::Stream {
        head: Response::new(answer.status(), content_type, Vec::new()),
        write: Box::new(move |writer| {
            loop {
                let written = match answer.next_chunk() {
                    Ok(Some(chunk)) => writer.write(&chunk),
                    Ok(None) => return,
                    // Ollama's clients read an error line as the failure.
                    Err(error) => {
                        let line = json!({"error": backend_failure(error)}).to_string() + "\n";
                        let _ = writer.write(line.as_bytes());
                        return;
                    }
                };
                if written.is_err() {
                    return;
                }
            }
        }),
    }
}

/// What a failed read of a backend answer says.
fn backend_failure(error: llm_service_sdk::outbound::OutboundError) -> String {
    Config::get().backend.failed(error).message()
}

/// A 200 answer's body, or the backend's failure.
fn ok_body((status, body): (u16, Vec<u8>)) -> Result<Vec<u8>, ApiError> {
    if status == 200 {
        Ok(body)
    } else {
        Err(ApiError::BadGateway { message: format!("status {status}: {}", String::from_utf8_lossy(&body)) })
    }
}

fn respond(body: Result<Vec<u8>, ApiError>) -> Reply {
    match body {
        Ok(body) => Response::new(200, "application/json", body).into(),
        Err(error) => error.response().into(),
    }
}
