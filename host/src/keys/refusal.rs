//! A refused key, answered in the request's dialect, so each client's SDK
//! raises its own error: Ollama's and the seed's `{"error": "..."}`,
//! OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! (`AuthenticationError` on 401, `PermissionDeniedError` on 403,
//! `RateLimitError` on 429), Anthropic's `{"type": "error", "error":
//! {"type", "message"}}`. A limit's refusal carries `Retry-After` and
//! OpenAI's `x-ratelimit-*` headers for the limit it hit (remaining 0);
//! every admitted answer to a limited key carries them for each limit.

use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::limits::{Exceeded, Limit, Quota};
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
    /// The key used up one of its limits.
    #[error("the client key {id} is over its {} limit; try again in {}s", exceeded.limit.label(), exceeded.retry_after_s)]
    Limited {
        /// The key's id.
        id: String,
        /// Which limit, and for how long.
        exceeded: Exceeded,
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
    /// Its status: 403 for a model the key may not use, 429 past a
    /// limit, else 401.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            Self::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            Self::Limited { exceeded, .. } => match exceeded.limit {
                Limit::Requests => "limit_rpm",
                Limit::Tokens => "limit_tpm",
                Limit::DailyTokens => "limit_daily_tokens",
            },
        }
    }

    /// The answer to a request for `path`.
    pub fn response(&self, path: &str) -> hyper::Response<HyperOutgoingBody> {
        let (status, message) = (self.status(), self.to_string());
        let (openai_type, openai_code, anthropic_type) = match status {
            StatusCode::FORBIDDEN => ("permission_error", "model_not_allowed", "permission_error"),
            StatusCode::TOO_MANY_REQUESTS => (
                // OpenAI names the limit that was hit as the error's type.
                if matches!(self, Self::Limited { exceeded, .. } if exceeded.limit == Limit::Requests) {
                    "requests"
                } else {
                    "tokens"
                },
                "rate_limit_exceeded",
                "rate_limit_error",
            ),
            _ => ("invalid_request_error", "invalid_api_key", "authentication_error"),
        };
        let body = match dialect(path) {
            Dialect::Seed => json!({"error": message}),
            Dialect::OpenAi => {
                let param = if status == StatusCode::FORBIDDEN { json!("model") } else { json!(null) };
                json!({"error": {"message": message, "type": openai_type, "param": param, "code": openai_code}})
            }
            Dialect::Anthropic => {
                json!({"type": "error", "error": {"type": anthropic_type, "message": message}})
            }
        };
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        match self {
            Self::Limited { exceeded, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(exceeded.retry_after_s));
                add_quota_headers(headers, &exceeded.quota());
            }
            Self::ModelNotAllowed { .. } => {}
            _ => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
        }
        response
    }
}

/// Adds OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
/// for each limit the key has (and `-tokens-day` for its daily budget).
pub fn add_quota_headers(headers: &mut http::HeaderMap, quota: &Quota) {
    for (suffix, limit) in
        [("requests", quota.requests), ("tokens", quota.tokens), ("tokens-day", quota.daily_tokens)]
    {
        let Some((limit, remaining, reset_s)) = limit else { continue };
        for (name, value) in [
            ("limit", HeaderValue::from(limit)),
            ("remaining", HeaderValue::from(remaining)),
            ("reset", HeaderValue::try_from(format!("{reset_s}s")).unwrap_or(HeaderValue::from_static("0s"))),
        ] {
            if let Ok(name) = http::HeaderName::try_from(format!("x-ratelimit-{name}-{suffix}")) {
                headers.insert(name, value);
            }
        }
    }
}
