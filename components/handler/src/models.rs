//! Model management: GET /models (what the backend offers), POST /model
//! (switch the current model, kept by the host, and empty the response
//! cache, as the seed says). POST /validate-model is [`crate::validate`].

use llm_service_sdk::bindings::llm_service::host::cache;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::{Value, json};

use crate::backend::ModelInfo;
use crate::config::Config;
use crate::error::ApiError;
use crate::key::KEY_PREFIX;
use crate::metrics::memory;

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

pub fn describe(model: &ModelInfo) -> Value {
    json!({"name": model.name, "size": model.size_bytes.map(memory)})
}

/// The optional (or required) `model` field of a JSON body.
pub fn model_field(body: &[u8], required: bool) -> Result<Option<String>, ApiError> {
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
