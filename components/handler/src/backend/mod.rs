//! The backend protocols: how a generation is asked of a model server and
//! how its answers (whole or streamed) are read. The host's settings say
//! which protocol and where (the host allows nothing else).
//!
//! A protocol is one file defining its [`Protocol`] ([`ollama`],
//! [`openai`]); [`Kind::protocol`] names each. What is the same for every
//! protocol (sending, waiting, errors, the listing's reading) is here.

mod ollama;
mod openai;

use llm_service_sdk::outbound::{self, OutboundError, Pending};
use serde_json::Value;

use crate::error::ApiError;
use crate::question::Question;
use crate::settings::Settings;
use crate::stored::Durations;
use crate::tool_calls::ToolCalls;

/// One generation to ask for.
#[derive(Debug, Clone)]
pub struct Generation<'a> {
    pub model: &'a str,
    /// The system prompt a plugin set.
    pub system: Option<&'a str>,
    pub prompt: &'a str,
    /// The seed's settings; a dialect's question carries its own options.
    pub settings: &'a Settings,
    /// A client dialect's question, rendered instead of prompt and settings.
    pub question: Option<&'a Question>,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub model: String,
    pub ending: Ending,
}

/// How an answer ended, as far as the backend says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ending {
    /// Text on the final line (usually empty): the answer's last piece all the same.
    pub text: String,
    pub tokens_generated: Option<u64>,
    pub prompt_tokens: Option<u64>,
    /// Why it stopped: `stop`, `length`, ...
    pub done_reason: Option<String>,
    /// The tool calls the model answered with.
    pub tool_calls: ToolCalls,
    /// What a thinking model thought before answering (Ollama's `thinking`).
    pub thinking: String,
    pub durations: Durations,
}

impl Ending {
    /// Takes in what a stream said before its end: why it will stop, tool calls.
    pub fn note(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Finish(reason) => self.done_reason = Some(reason),
            StreamEvent::ToolCalls(calls) => self.tool_calls.add_ollama(&calls),
            StreamEvent::ToolCallFragments(fragments) => self.tool_calls.add_openai_fragments(&fragments),
            StreamEvent::Thinking(piece) => self.thinking.push_str(&piece),
            StreamEvent::Text(_) | StreamEvent::Done(_) | StreamEvent::Skip => {}
        }
    }

    /// Takes in the stream's last event: its text, counts and calls, with
    /// what was noted before kept where the end says nothing.
    pub fn conclude(&mut self, end: Ending) {
        let Ending { text, tokens_generated, prompt_tokens, done_reason, tool_calls, thinking, durations } =
            end;
        self.durations = durations;
        self.thinking.push_str(&thinking);
        self.text = text;
        self.tokens_generated = tokens_generated.or(self.tokens_generated);
        self.prompt_tokens = prompt_tokens.or(self.prompt_tokens);
        self.done_reason = done_reason.or(self.done_reason.take());
        self.tool_calls.extend(tool_calls);
    }
}

/// One line of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// More text.
    Text(String),
    /// Why the answer will end (OpenAI's `finish_reason`, which comes
    /// before the usage counts and `[DONE]`).
    Finish(String),
    /// Whole tool calls in Ollama's shape (an Ollama stream line).
    ToolCalls(serde_json::Value),
    /// Tool-call fragments of an OpenAI stream (`delta.tool_calls`).
    ToolCallFragments(serde_json::Value),
    /// A piece of a thinking model's thoughts (gathered, relayed with the end).
    Thinking(String),
    /// The end.
    Done(Ending),
    /// Nothing for the client (keep-alives, role markers).
    Skip,
}

/// What the handler needs of one backend protocol: each protocol's file
/// defines one as its `PROTOCOL`.
pub struct Protocol {
    /// Its name: the host's BACKEND_KIND, and a part of every cache key.
    pub name: &'static str,
    /// The path and body asking for a generation, whole or streamed.
    pub request: fn(&Generation, bool) -> (&'static str, Value),
    /// A whole answer's completion, the given model when it names none.
    pub completion: fn(&Value, &str) -> Result<Completion, ApiError>,
    /// One line of a streamed answer.
    pub stream_event: fn(&[u8]) -> Result<StreamEvent, ApiError>,
    /// Where its models are listed, and how.
    pub listing: Listing,
}

/// Where a protocol lists its models: `GET path` answers an object whose
/// `array` field holds one object per model, named by its `name` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub path: &'static str,
    pub array: &'static str,
    pub name: &'static str,
}

/// The protocol a backend speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ollama,
    OpenAi,
}

impl Kind {
    /// How it is spoken.
    pub fn protocol(self) -> &'static Protocol {
        match self {
            Self::Ollama => &ollama::PROTOCOL,
            Self::OpenAi => &openai::PROTOCOL,
        }
    }
}

/// The configured backend.
#[derive(Debug, Clone)]
pub struct Backend {
    kind: Kind,
    base_url: String,
}

impl Backend {
    /// The backend speaking `kind` at `base_url`.
    pub fn new(kind: Kind, base_url: &str) -> Self {
        Self { kind, base_url: base_url.trim_end_matches('/').to_string() }
    }

    /// The protocol.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sends the request for `generation` without waiting for the answer.
    pub fn start(&self, generation: &Generation, stream: bool) -> Result<Pending, ApiError> {
        let (path, body) = (self.kind.protocol().request)(generation, stream);
        let url = format!("{}{path}", self.base_url);
        outbound::start("POST", &url, Some(body.to_string().as_bytes())).map_err(|error| self.failed(error))
    }

    /// Waits for and reads a whole (non-streamed) answer from `model`.
    pub fn finish(&self, model: &str, pending: Pending) -> Result<Completion, ApiError> {
        let response = pending.wait().map_err(|error| self.failed(error))?;
        let status = response.status();
        let body = response.read_all().map_err(|error| self.failed(error))?;
        if status != 200 {
            return Err(error_from_status(status, &body, model));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| ApiError::BadGateway { message: format!("unreadable answer: {error}") })?;
        (self.kind.protocol().completion)(&parsed, model)
    }

    /// Waits for the head of a streamed answer; errors come before any text.
    pub fn open_stream(&self, model: &str, pending: Pending) -> Result<outbound::Response, ApiError> {
        let response = pending.wait().map_err(|error| self.failed(error))?;
        if response.status() != 200 {
            let status = response.status();
            let body = response.read_all().map_err(|error| self.failed(error))?;
            return Err(error_from_status(status, &body, model));
        }
        Ok(response)
    }

    /// Reads one line of a streamed answer.
    pub fn stream_event(&self, line: &[u8]) -> Result<StreamEvent, ApiError> {
        (self.kind.protocol().stream_event)(line)
    }
}

impl Backend {
    /// Calls `path` on the backend and reads the whole answer: its status
    /// and body (what the dialects pass through: listings, embeddings).
    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>), ApiError> {
        let response = self.open(method, path, body)?;
        let status = response.status();
        let body = response.read_all().map_err(|error| self.failed(error))?;
        Ok((status, body))
    }

    /// Calls `path` on the backend and returns the answer as it arrives
    /// (what the dialects stream through untouched: model management).
    pub fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<outbound::Response, ApiError> {
        let url = format!("{}{path}", self.base_url);
        outbound::send(method, &url, body).map_err(|error| self.failed(error))
    }
}

/// A model the backend offers.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub size_bytes: Option<u64>,
    /// What an OpenAI-compatible server says of it besides its name:
    /// `created` and llama.cpp's `meta` (`size`, `n_params`, `ftype`).
    pub listed: serde_json::Value,
}

impl Backend {
    /// The models the backend offers (Ollama: /api/tags; OpenAI: /v1/models).
    pub fn list_models(&self) -> Result<Vec<ModelInfo>, ApiError> {
        let Listing { path, array, name: name_field } = self.kind.protocol().listing;
        let (status, body) = self.call("GET", path, None)?;
        if status != 200 {
            return Err(ApiError::BadGateway { message: format!("listing models: status {status}") });
        }
        let listing: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| ApiError::BadGateway { message: format!("unreadable model list: {error}") })?;
        Ok(listing
            .get(array)
            .and_then(serde_json::Value::as_array)
            .map(|models| {
                models
                    .iter()
                    .filter_map(|model| {
                        Some(ModelInfo {
                            name: model.get(name_field)?.as_str()?.to_string(),
                            size_bytes: model
                                .get("size")
                                .or_else(|| model.pointer("/meta/size"))
                                .and_then(serde_json::Value::as_u64),
                            listed: model.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The backend's entry for `model` (Ollama's `name` and `name:latest`
    /// are one model), or `None`.
    pub fn find_model(&self, model: &str) -> Result<Option<ModelInfo>, ApiError> {
        let latest = format!("{model}:latest");
        Ok(self.list_models()?.into_iter().find(|info| info.name == model || info.name == latest))
    }
}

impl Backend {
    /// Maps a failed outbound call to this backend; the host already
    /// retried what can be retried. An unreachable backend is named by its
    /// address, so an operator sees which one.
    pub fn failed(&self, error: OutboundError) -> ApiError {
        match error {
            OutboundError::Unreachable(why) => {
                ApiError::Unavailable { message: format!("{} {}", self.base_url, unreachable_words(&why)) }
            }
            other => map_outbound(other),
        }
    }
}

/// What an unreachable backend did, in words (the host's error code's name
/// otherwise).
fn unreachable_words(code: &str) -> String {
    match code.trim_start_matches("ErrorCode::") {
        "ConnectionRefused" => "refused the connection".into(),
        "ConnectionTerminated" => "closed the connection before answering".into(),
        "DestinationUnavailable" => "cannot be reached".into(),
        "DestinationNotFound" | "DnsTimeout" => "could not be resolved".into(),
        other if other.starts_with("DnsError") => "could not be resolved".into(),
        other => format!("is unreachable ({other})"),
    }
}

/// Maps a failed outbound call; the host already retried what can be retried.
fn map_outbound(error: OutboundError) -> ApiError {
    match error {
        OutboundError::Busy => ApiError::Busy,
        OutboundError::Timeout => ApiError::Timeout,
        OutboundError::Unreachable(why) => ApiError::Unavailable { message: unreachable_words(&why) },
        OutboundError::Denied => ApiError::BadGateway { message: "the host denied the backend URL".into() },
        OutboundError::Other(why) => ApiError::BadGateway { message: why },
    }
}

/// Maps a non-200 answer: a missing model is a 404 naming it; 502/503/504
/// (after the host's retries) mean unavailable; 400, 413 and 422 are the
/// request's own fault, relayed; anything else (a 401 means the gateway's
/// own credentials) is a bad gateway carrying the backend's own message.
pub fn error_from_status(status: u16, body: &[u8], model: &str) -> ApiError {
    let message = backend_message(body).unwrap_or_else(|| format!("status {status}"));
    match status {
        404 => ApiError::ModelNotFound { model: model.to_string() },
        502..=504 => ApiError::Unavailable { message: format!("status {status}: {message}") },
        400 | 413 | 422 => ApiError::BackendRefused { status, message },
        _ => ApiError::BadGateway { message: format!("status {status}: {message}") },
    }
}

/// `{"error": "..."}` (Ollama) or `{"error": {"message": "..."}}` (OpenAI).
fn backend_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    error.as_str().or_else(|| error.get("message")?.as_str()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_backend_is_named_and_its_failure_put_in_words() {
        let backend = Backend::new(Kind::Ollama, "http://10.0.0.7:11434/");
        let refused = backend.failed(OutboundError::Unreachable("ErrorCode::ConnectionRefused".into()));
        assert_eq!(
            refused.message(),
            "the model backend is unavailable: http://10.0.0.7:11434 refused the connection"
        );
        let odd = backend.failed(OutboundError::Unreachable("ErrorCode::Weird".into()));
        assert_eq!(
            odd.message(),
            "the model backend is unavailable: http://10.0.0.7:11434 is unreachable (Weird)"
        );
    }
}
