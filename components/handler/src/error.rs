//! The handler's error values and the one place they become HTTP responses.

use llm_service_sdk::http::Response;
use serde_json::{Map, Value, json};

/// Seconds a client told "unavailable" should wait: the backend is down or
/// overloaded, so a moment is better than at once.
const RETRY_AFTER_UNAVAILABLE_S: &str = "5";
/// Seconds a client told "busy" should wait: queue slots free quickly.
const RETRY_AFTER_BUSY_S: &str = "1";

/// A failure as a flight hands it on.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub status: u16,
    pub kind: &'static str,
    pub detail: String,
    pub subject: Option<String>,
    pub retry_after_s: Option<u32>,
}

/// A failure to tell the client about.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request is invalid; `field` names the offending part.
    Invalid { field: String, message: String },
    /// The body is not JSON.
    MalformedJson { line: usize, column: usize, message: String },
    /// The model does not exist at the backend.
    ModelNotFound { model: String },
    /// The backend is unreachable (after the host's retries) or answers 502/503.
    Unavailable { message: String },
    /// Too many generations wait for the backend.
    Busy,
    /// The backend did not answer in time.
    Timeout,
    /// The backend answered with an error we do not pass through.
    BadGateway { message: String },
    /// The backend refused the request itself (400, 413 or 422: a prompt
    /// over the model's context, say): the client's to fix, relayed with
    /// the backend's status and words, never retried or tried elsewhere.
    BackendRefused { status: u16, message: String },
    /// The character's prompt plugin refused the request.
    PluginRefused { plugin: String, message: String },
    /// The character's prompt plugin trapped, overran or misbehaved.
    PluginFailed { plugin: String, message: String },
    /// The shared cache (KeyDB) could not do what was asked (a clear).
    CacheUnavailable { message: String },
}

impl From<serde_json::Error> for ApiError {
    fn from(error: serde_json::Error) -> Self {
        Self::MalformedJson { line: error.line(), column: error.column(), message: error.to_string() }
    }
}

impl ApiError {
    /// An invalid-field error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_string(), message: message.into() }
    }

    /// The failure's kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::MalformedJson { .. } => "malformed_json",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::Unavailable { .. } => "backend_unavailable",
            Self::Busy => "backend_busy",
            Self::Timeout => "backend_timeout",
            Self::BadGateway { .. } => "backend_error",
            Self::BackendRefused { .. } => "backend_refused",
            Self::PluginRefused { .. } => "plugin_refused",
            Self::PluginFailed { .. } => "plugin_failed",
            Self::CacheUnavailable { .. } => "cache_unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } | Self::MalformedJson { .. } => 400,
            Self::ModelNotFound { .. } => 404,
            Self::Unavailable { .. } | Self::Busy | Self::CacheUnavailable { .. } => 503,
            Self::Timeout => 504,
            Self::BadGateway { .. } | Self::PluginFailed { .. } => 502,
            Self::PluginRefused { .. } => 422,
            Self::BackendRefused { status, .. } => *status,
        }
    }

    /// The message.
    pub fn message(&self) -> String {
        match self {
            Self::Invalid { message, .. } => message.clone(),
            Self::MalformedJson { line, column, message } => {
                format!("malformed JSON at line {line}, column {column}: {message}")
            }
            Self::ModelNotFound { model } => format!("model '{model}' not found"),
            Self::Unavailable { message } => format!("the model backend is unavailable: {message}"),
            Self::Busy => "too many generations are waiting for the model backend; retry shortly".into(),
            Self::Timeout => "the model backend did not answer in time".into(),
            Self::BadGateway { message } => format!("the model backend failed: {message}"),
            Self::BackendRefused { message, .. } => {
                format!("the model backend refused the request: {message}")
            }
            Self::PluginRefused { plugin, message } => {
                format!("plugin '{plugin}' refused the request: {message}")
            }
            Self::PluginFailed { plugin, message } => format!("plugin '{plugin}' failed: {message}"),
            Self::CacheUnavailable { message } => format!("the shared cache is unavailable: {message}"),
        }
    }

    /// The JSON body: `{"error": ...}` plus what locates the problem.
    pub fn body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("error".into(), json!(self.message()));
        match self {
            Self::Invalid { field, .. } => {
                body.insert("field".into(), json!(field));
            }
            Self::MalformedJson { line, column, .. } => {
                body.insert("line".into(), json!(line));
                body.insert("column".into(), json!(column));
            }
            Self::ModelNotFound { model } => {
                body.insert("model".into(), json!(model));
            }
            Self::PluginRefused { plugin, .. } | Self::PluginFailed { plugin, .. } => {
                body.insert("plugin".into(), json!(plugin));
            }
            _ => {}
        }
        body
    }

    /// Whether a stale answer may stand in for this failure (STALE_IF_ERROR):
    /// the backend failed, timed out or is overloaded, or the plugin failed
    /// (not when it refused: that is its answer). Leader and followers of a
    /// flight both judge by this.
    pub fn allows_stale(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. }
                | Self::Busy
                | Self::Timeout
                | Self::BadGateway { .. }
                | Self::PluginFailed { .. }
        )
    }

    /// The failure as its parts: status, kind, the message without the
    /// status's own wording, and what it is about.
    pub fn parts(&self) -> Parts {
        let (detail, subject) = match self {
            Self::Invalid { field, message } => (message.clone(), Some(field.clone())),
            Self::MalformedJson { message, .. } => (message.clone(), None),
            Self::ModelNotFound { model } => (String::new(), Some(model.clone())),
            Self::Unavailable { message }
            | Self::BadGateway { message }
            | Self::CacheUnavailable { message } => (message.clone(), None),
            Self::Busy | Self::Timeout => (String::new(), None),
            Self::BackendRefused { status, message } => (message.clone(), Some(status.to_string())),
            Self::PluginRefused { plugin, message } | Self::PluginFailed { plugin, message } => {
                (message.clone(), Some(plugin.clone()))
            }
        };
        Parts {
            status: self.status(),
            kind: self.kind(),
            detail,
            subject,
            retry_after_s: self.retry_after().and_then(|seconds| seconds.parse().ok()),
        }
    }

    /// The failure [`parts`](Self::parts) describe (another request's, in a
    /// flight); `None` for a kind this handler does not know.
    pub fn from_parts(kind: &str, detail: String, subject: Option<String>) -> Option<Self> {
        let status = subject.as_deref().and_then(|status| status.parse().ok());
        let subject = || subject.clone().unwrap_or_default();
        Some(match kind {
            "invalid_request" => Self::Invalid { field: subject(), message: detail },
            "malformed_json" => Self::MalformedJson { line: 0, column: 0, message: detail },
            "model_not_found" => Self::ModelNotFound { model: subject() },
            "backend_unavailable" => Self::Unavailable { message: detail },
            "backend_busy" => Self::Busy,
            "backend_timeout" => Self::Timeout,
            "backend_error" => Self::BadGateway { message: detail },
            "backend_refused" => Self::BackendRefused { status: status?, message: detail },
            "plugin_refused" => Self::PluginRefused { plugin: subject(), message: detail },
            "plugin_failed" => Self::PluginFailed { plugin: subject(), message: detail },
            "cache_unavailable" => Self::CacheUnavailable { message: detail },
            _ => return None,
        })
    }

    fn retry_after(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable { .. } | Self::CacheUnavailable { .. } => Some(RETRY_AFTER_UNAVAILABLE_S),
            Self::Busy => Some(RETRY_AFTER_BUSY_S),
            _ => None,
        }
    }

    /// Whether the backend refused a prompt over the model's context
    /// (llama.cpp: "exceeds the available context size"; vLLM: "maximum
    /// context length"), which OpenAI's dialect names `context_length_exceeded`.
    pub fn is_context_overflow(&self) -> bool {
        let Self::BackendRefused { message, .. } = self else { return false };
        let message = message.to_lowercase();
        message.contains("context") && (message.contains("exceed") || message.contains("maximum"))
    }

    /// The HTTP response.
    pub fn response(&self) -> Response {
        let response = Response::json(self.status(), &self.body());
        match self.retry_after() {
            Some(seconds) => response.with_header("retry-after", seconds),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_that_crosses_a_flight_comes_back_the_same() {
        for error in [
            ApiError::invalid("settings.top_k", "bad"),
            ApiError::ModelNotFound { model: "m".into() },
            ApiError::Unavailable { message: "refused".into() },
            ApiError::Busy,
            ApiError::Timeout,
            ApiError::BadGateway { message: "status 500".into() },
            ApiError::BackendRefused { status: 400, message: "exceeds the context size".into() },
            ApiError::PluginRefused { plugin: "p".into(), message: "no".into() },
            ApiError::PluginFailed { plugin: "p".into(), message: "trap".into() },
            ApiError::CacheUnavailable { message: "connection refused".into() },
        ] {
            let Parts { kind, detail, subject, .. } = error.parts();
            assert_eq!(ApiError::from_parts(kind, detail, subject), Some(error.clone()));
        }
    }
}
