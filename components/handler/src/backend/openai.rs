//! OpenAI-compatible servers (llama.cpp's server, vLLM, LM Studio):
//! POST /v1/chat/completions, whole or as server-sent events.

use serde_json::{Value, json};

use super::{Completion, Generation, StreamEvent};
use crate::error::ApiError;

/// The path and body asking for `generation`. `top_k` and `repeat_penalty`
/// are not OpenAI's, but llama.cpp and vLLM read them and others ignore them.
pub fn request(generation: &Generation, stream: bool) -> (&'static str, Value) {
    let mut body = generation.settings.to_json();
    body.insert("model".into(), json!(generation.model));
    let mut messages = Vec::new();
    if let Some(system) = generation.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": generation.prompt}));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    ("/v1/chat/completions", Value::Object(body))
}

/// A whole answer: `choices[0].message.content`, `usage.completion_tokens`.
pub fn completion(answer: &Value, model: &str) -> Result<Completion, ApiError> {
    let text = answer
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadGateway { message: "answer has no choices[0].message.content".into() })?;
    Ok(Completion {
        text: text.to_string(),
        model: model.to_string(),
        tokens_generated: answer.pointer("/usage/completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// One SSE line: `data: {...}` with `choices[0].delta.content`, a usage-only
/// chunk, or `data: [DONE]`. Other lines (comments, blank) are skipped.
pub fn stream_event(line: &[u8]) -> Result<StreamEvent, ApiError> {
    let line = std::str::from_utf8(line).unwrap_or_default().trim();
    let Some(data) = line.strip_prefix("data:").map(str::trim) else {
        return Ok(StreamEvent::Skip);
    };
    if data == "[DONE]" {
        return Ok(StreamEvent::Done { text: String::new(), tokens_generated: None });
    }
    let value: Value = serde_json::from_str(data)
        .map_err(|error| ApiError::BadGateway { message: format!("unreadable stream event: {error}") })?;
    if let Some(error) = value.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("stream error");
        return Err(ApiError::BadGateway { message: message.to_string() });
    }
    if let Some(tokens) = value.pointer("/usage/completion_tokens").and_then(Value::as_u64) {
        let text = value.pointer("/choices/0/delta/content").and_then(Value::as_str).unwrap_or_default();
        if text.is_empty() {
            return Ok(StreamEvent::Done { text: String::new(), tokens_generated: Some(tokens) });
        }
    }
    match value.pointer("/choices/0/delta/content").and_then(Value::as_str) {
        Some(text) if !text.is_empty() => Ok(StreamEvent::Text(text.to_string())),
        _ => Ok(StreamEvent::Skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_sent_events_become_text_then_done() {
        let chunk = br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert_eq!(stream_event(chunk).unwrap(), StreamEvent::Text("Hi".into()));
        let role = br#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#;
        assert_eq!(stream_event(role).unwrap(), StreamEvent::Skip);
        let usage = br#"data: {"choices":[],"usage":{"completion_tokens":7}}"#;
        assert_eq!(
            stream_event(usage).unwrap(),
            StreamEvent::Done { text: String::new(), tokens_generated: Some(7) }
        );
        assert_eq!(
            stream_event(b"data: [DONE]").unwrap(),
            StreamEvent::Done { text: String::new(), tokens_generated: None }
        );
        assert_eq!(stream_event(b": ping").unwrap(), StreamEvent::Skip);
    }
}
