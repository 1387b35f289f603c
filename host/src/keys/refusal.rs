//! A refused key, answered in the request's dialect, so each client's SDK
//! raises its own error: Ollama's and the seed's `{"error": "..."}`,
//! OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! (`AuthenticationError` on 401, `PermissionDeniedError` on 403),
//! Anthropic's `{"type": "error", "error": {"type", "message"}}`.

use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::answers::json_response;

/// Why a request's key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// CLIENT_KEYS=required and none was presented.
    #[error(
        "this service needs a client key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
    )]
    Missing,
    /// No key has that secret.
    #[error("the client key is not valid")]
    Unknown,
    /// The key was revoked.
    #[error("the client key {id} was revoked")]
    Revoked {
        /// The key's id.
        id: String,
    },
    /// The key's time is over.
    #[error("the client key {id} has expired")]
    Expired {
        /// The key's id.
        id: String,
    },
    /// The key may not use the model asked for.
    #[error("the client key {id} may not use the model '{model}'")]
    ModelNotAllowed {
        /// The key's id.
        id: String,
        /// The model asked for.
        model: String,
    },
}

/// The client dialects, by where their requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Seed,
    OpenAi,
    Anthropic,
}

fn dialect(path: &str) -> Dialect {
    if path.starts_with("/v1/messages") {
        Dialect::Anthropic
    } else if path.starts_with("/v1/") {
        Dialect::OpenAi
    } else {
        Dialect::Seed
    }
}

impl Refusal {
    /// Its status: 403 for a model the key may not use, else 401.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Its label in logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "key_missing",
            Self::Unknown => "key_unknown",
            Self::Revoked { .. } => "key_revoked",
            Self::Expired { .. } => "key_expired",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
        }
    }

    /// The answer to a request for `path`.
    pub fn response(&self, path: &str) -> hyper::Response<HyperOutgoingBody> {
        let (status, message) = (self.status(), self.to_string());
        let forbidden = status == StatusCode::FORBIDDEN;
        let body = match dialect(path) {
            Dialect::Seed => json!({"error": message}),
            Dialect::OpenAi => {
                let (kind, code) = if forbidden {
                    ("permission_error", "model_not_allowed")
                } else {
                    ("invalid_request_error", "invalid_api_key")
                };
                let param = if forbidden { json!("model") } else { json!(null) };
                json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
            }
            Dialect::Anthropic => {
                let kind = if forbidden { "permission_error" } else { "authentication_error" };
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
        };
        let mut response = json_response(status, &body);
        if !forbidden {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
