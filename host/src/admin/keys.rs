//! The admin API's client keys:
//!
//! - `POST /keys` with `{"tenant", "name"?, "models"?, "expires_at"?,
//!   "cache_namespace"?}` → 201 and the key record with its `secret`,
//!   shown this once (400 naming the field on bad input).
//! - `GET /keys`: every key's record, never a secret.
//! - `DELETE /keys/{id}`: revokes it (404 if none has that id); it stays
//!   listed, with `revoked_at`.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::AdminApi;
use crate::keys::NewKey;
use crate::server::{json_error, json_response as json};

type Response = hyper::Response<HyperOutgoingBody>;

impl AdminApi {
    /// The answer to a key call, or `None` when `path` is not one.
    pub(super) fn keys(&self, method: &Method, path: &str, body: &Bytes) -> Option<Response> {
        if path != "/keys" && !path.starts_with("/keys/") {
            return None;
        }
        Some(match (method, path) {
            (&Method::POST, "/keys") => match serde_json::from_slice::<NewKey>(body) {
                Err(error) => {
                    json_error(StatusCode::BAD_REQUEST, &format!("a new key is {{\"tenant\": ...}}: {error}"))
                }
                Ok(new) => match self.keys.create(new) {
                    Ok((key, secret)) => {
                        let mut shown = serde_json::to_value(&key).unwrap_or(Value::Null);
                        shown["secret"] = json!(secret);
                        json(StatusCode::CREATED, &shown)
                    }
                    Err(error) if error.contains("must be") => json_error(StatusCode::BAD_REQUEST, &error),
                    Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &error),
                },
            },
            (&Method::GET, "/keys") => {
                json(StatusCode::OK, &json!({"mode": self.keys.mode(), "keys": self.keys.list()}))
            }
            (&Method::DELETE, path) if path.len() > "/keys/".len() => {
                let id = &path["/keys/".len()..];
                match self.keys.revoke(id) {
                    Ok(Some(key)) => json(StatusCode::OK, &serde_json::to_value(&key).unwrap_or(Value::Null)),
                    Ok(None) => {
                        json_error(StatusCode::NOT_FOUND, &format!("no client key has the id '{id}'"))
                    }
                    Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &error),
                }
            }
            _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "keys: POST /keys, GET /keys, DELETE /keys/{id}"),
        })
    }
}
