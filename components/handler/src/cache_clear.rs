//! POST /cache/clear, optionally `{"character": "..."}` → `{"cleared": N}`.
//! Only this service's keys (`llm_response:...`) are ever removed.

use llm_service_sdk::bindings::llm_service::host::cache;
use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::key::{KEY_PREFIX, character_segment};

/// POST /cache/clear.
pub fn post(request: &Request) -> Reply {
    let character = match character(request.body()) {
        Ok(character) => character,
        Err(error) => return error.response().into(),
    };
    // The whole segment between separators: exactly this character's keys.
    let containing = character.map(|character| format!(":{}:", character_segment(&character)));
    match cache::clear(KEY_PREFIX, containing.as_deref()) {
        Ok(cleared) => Response::json(200, &json!({ "cleared": cleared })).into(),
        Err(error) => ApiError::CacheUnavailable { message: cache_error(&error) }.response().into(),
    }
}

/// A cache error in words.
fn cache_error(error: &cache::Error) -> String {
    match error {
        cache::Error::Unavailable(reason)
        | cache::Error::Other(reason)
        | cache::Error::InvalidKey(reason) => reason.clone(),
        cache::Error::TooLarge(bytes) => format!("a value of {bytes} bytes is over the limit"),
    }
}

/// The character to clear, from an optional JSON body.
fn character(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)?;
    match value.get("character") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(character)) if !character.is_empty() => Ok(Some(character.clone())),
        Some(_) => Err(ApiError::invalid("character", "character must be a non-empty string")),
    }
}
