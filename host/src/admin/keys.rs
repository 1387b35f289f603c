//! The admin API's client keys:
//!
//! - `POST /keys` with `{"tenant", "name"?, "models"?, "expires_at"?,
//!   "cache_namespace"?, "limits"?: {"rpm"?, "tpm"?, "daily_tokens"?}}`
//!   → 201 and the key record with its `secret`, shown this once (400
//!   naming the field on bad input).
//! - `GET /keys`: every key's record with its `use` today (requests,
//!   tokens, last used; the fleet's with a store), never a secret.
//! - `PATCH /keys/{id}` with any of `name`, `models`, `expires_at`,
//!   `limits` (whole): the changed record (404 if none has that id).
//! - `DELETE /keys/{id}`: revokes it (404 if none has that id); it stays
//!   listed, with `revoked_at`.
//!
//! With a shared store a change the store does not take is refused with
//! 503: no replica serves a key the others do not know.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::AdminApi;
use crate::keys::{ClientKey, KeyError, NewKey};
use crate::server::{json_error, json_response as json};

type Response = hyper::Response<HyperOutgoingBody>;

/// Whether `path` is one of the keys' calls.
pub(super) fn is_keys_path(path: &str) -> bool {
    path == "/keys" || path.starts_with("/keys/")
}

/// `body` as a `T`, or what a 400 says was wrong and what is expected.
fn parse<T: DeserializeOwned>(body: &Bytes, expected: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| format!("{expected}: {error}"))
}

fn failed(error: &KeyError) -> Response {
    let status = match error {
        KeyError::Invalid(_) => StatusCode::BAD_REQUEST,
        KeyError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        KeyError::Kept(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json_error(status, &error.to_string())
}

fn record(key: &ClientKey) -> Value {
    serde_json::to_value(key).unwrap_or(Value::Null)
}

impl AdminApi {
    /// The answer to a key call.
    pub(super) async fn keys(&self, method: &Method, path: &str, body: &Bytes) -> Response {
        let id = path.strip_prefix("/keys/").filter(|id| !id.is_empty());
        let changed = |changed: Result<Option<ClientKey>, KeyError>, id: &str| match changed {
            Ok(Some(key)) => json(StatusCode::OK, &record(&key)),
            Ok(None) => json_error(StatusCode::NOT_FOUND, &format!("no client key has the id '{id}'")),
            Err(error) => failed(&error),
        };
        match (method, id) {
            (&Method::POST, None) => {
                let new = match parse::<NewKey>(body, "a new key is {\"tenant\": ...}") {
                    Ok(new) => new,
                    Err(refused) => return json_error(StatusCode::BAD_REQUEST, &refused),
                };
                match self.keys.create(new).await {
                    Ok((key, secret)) => {
                        let mut shown = record(&key);
                        shown["secret"] = json!(secret);
                        json(StatusCode::CREATED, &shown)
                    }
                    Err(error) => failed(&error),
                }
            }
            (&Method::GET, None) => json(
                StatusCode::OK,
                &json!({"mode": self.keys.mode(), "keys": self.keys.list_with_use().await}),
            ),
            (&Method::PATCH, Some(id)) => {
                match parse(body, "a change is {\"name\"?, \"models\"?, \"expires_at\"?, \"limits\"?}") {
                    Ok(change) => changed(self.keys.update(id, change).await, id),
                    Err(refused) => json_error(StatusCode::BAD_REQUEST, &refused),
                }
            }
            (&Method::DELETE, Some(id)) => changed(self.keys.revoke(id).await, id),
            _ => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "keys: POST /keys, GET /keys, PATCH /keys/{id}, DELETE /keys/{id}",
            ),
        }
    }
}
