//! OpenAI's `GET /v1/models`, `GET /v1/models/{id}` and
//! `POST /v1/embeddings`: an OpenAI-compatible backend's own answers (the
//! listing reused for a few seconds), or Ollama's translated.

use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Value, json};

use super::openai_params::error_response;
use super::{LISTING_FRESH_S, object_body, short_cached};
use crate::backend::{Kind, error_from_status};
use crate::config::Config;
use crate::error::ApiError;

/// The path prefix of one model's entry.
pub const MODEL_PATH_PREFIX: &str = "/v1/models/";

/// GET /v1/models.
pub fn list(_request: &Request) -> Reply {
    match models() {
        Ok(models) => Response::json(200, &json!({"object": "list", "data": models})).into(),
        Err(error) => error_response(&error).into(),
    }
}

/// GET /v1/models/{id} (an id may hold slashes, as Hugging Face names do).
pub fn one(request: &Request) -> Reply {
    let id = request.path().strip_prefix(MODEL_PATH_PREFIX).unwrap_or_default();
    let found = models().map(|models| models.into_iter().find(|model| model["id"] == id));
    match found {
        Ok(Some(model)) => Response::json(200, &model).into(),
        Ok(None) => error_response(&ApiError::ModelNotFound { model: id.to_string() }).into(),
        Err(error) => error_response(&error).into(),
    }
}

/// The names the backend lists (the listing reused for
/// [`LISTING_FRESH_S`]); `None` when it cannot be read.
pub fn listed_names() -> Option<Vec<String>> {
    let models = models().ok()?;
    Some(models.iter().filter_map(|model| model["id"].as_str().map(str::to_string)).collect())
}

/// Every model as an OpenAI model object.
fn models() -> Result<Vec<Value>, ApiError> {
    let backend = &Config::get().backend;
    let listing = short_cached("v1-models", LISTING_FRESH_S, || {
        let models: Vec<Value> = backend
            .list_models()?
            .into_iter()
            .map(|model| json!({"id": model.name, "object": "model", "created": 0, "owned_by": owner(backend.kind())}))
            .collect();
        Ok(Value::Array(models).to_string().into_bytes())
    })?;
    serde_json::from_slice(&listing)
        .map_err(|error| ApiError::BadGateway { message: format!("unreadable model list: {error}") })
}

fn owner(kind: Kind) -> &'static str {
    match kind {
        Kind::Ollama => "library",
        Kind::OpenAi => "owner",
    }
}

/// POST /v1/embeddings: `input` (a string or a list) → one vector each.
pub fn embeddings(request: &Request) -> Reply {
    let answer = object_body(request).and_then(|body| {
        let backend = &Config::get().backend;
        if backend.kind() == Kind::OpenAi {
            let (status, bytes) = backend.call("POST", "/v1/embeddings", Some(request.body()))?;
            return Ok(Response::new(status, "application/json", bytes));
        }
        let input = body.get("input").cloned().ok_or_else(|| ApiError::invalid("input", "input is required"))?;
        let model = body.get("model").cloned().unwrap_or(Value::Null);
        let mut asked = json!({"model": model, "input": input});
        if let Some(dimensions) = body.get("dimensions").filter(|dimensions| !dimensions.is_null()) {
            asked["dimensions"] = dimensions.clone();
        }
        let (status, bytes) = backend.call("POST", "/api/embed", Some(asked.to_string().as_bytes()))?;
        if status != 200 {
            return Err(error_from_status(status, &bytes, model.as_str().unwrap_or_default()));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|error| ApiError::BadGateway { message: format!("unreadable embeddings: {error}") })?;
        let data: Vec<Value> = answer
            .get("embeddings")
            .and_then(Value::as_array)
            .map(|vectors| {
                vectors
                    .iter()
                    .enumerate()
                    .map(|(index, vector)| json!({"object": "embedding", "index": index, "embedding": vector}))
                    .collect()
            })
            .unwrap_or_default();
        let tokens = answer.get("prompt_eval_count").and_then(Value::as_u64).unwrap_or(0);
        Ok(Response::json(
            200,
            &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ))
    });
    match answer {
        Ok(response) => response.into(),
        Err(error) => error_response(&error).into(),
    }
}
