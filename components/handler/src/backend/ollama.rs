//! Ollama's REST API: POST /api/generate, whole or as NDJSON lines.

use serde_json::{Value, json};

use super::{Completion, Generation, StreamEvent};
use crate::error::ApiError;

/// The path and body asking Ollama for `generation`: every setting is an
/// option under its own name, but `max_tokens` is Ollama's `num_predict`;
/// a system prompt is Ollama's `system`.
pub fn request(generation: &Generation, stream: bool) -> (&'static str, Value) {
    let mut options = generation.settings.to_json();
    if let Some(max_tokens) = options.remove("max_tokens") {
        options.insert("num_predict".into(), max_tokens);
    }
    let mut body = json!({
        "model": generation.model,
        "prompt": generation.prompt,
        "stream": stream,
        "options": options,
    });
    if let Some(system) = generation.system {
        body["system"] = json!(system);
    }
    ("/api/generate", body)
}

/// A whole answer: `response`, `model`, `eval_count`.
pub fn completion(answer: &Value, model: &str) -> Result<Completion, ApiError> {
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(ApiError::BadGateway { message: error.to_string() });
    }
    let text = answer
        .get("response")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadGateway { message: "answer has no 'response' text".into() })?;
    Ok(Completion {
        text: text.to_string(),
        model: answer.get("model").and_then(Value::as_str).unwrap_or(model).to_string(),
        tokens_generated: answer.get("eval_count").and_then(Value::as_u64).unwrap_or(0),
    })
}

/// One NDJSON line: `{"response": "...", "done": false}` or the final
/// `{"done": true, "eval_count": N}`, or `{"error": "..."}`.
pub fn stream_event(line: &[u8]) -> Result<StreamEvent, ApiError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(StreamEvent::Skip);
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|error| ApiError::BadGateway { message: format!("unreadable stream line: {error}") })?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(ApiError::BadGateway { message: error.to_string() });
    }
    if value.get("done").and_then(Value::as_bool) == Some(true) {
        // Ollama's final line carries statistics and, usually, an empty
        // `response`; text there is the answer's last piece all the same.
        return Ok(StreamEvent::Done {
            text: value.get("response").and_then(Value::as_str).unwrap_or_default().to_string(),
            tokens_generated: value.get("eval_count").and_then(Value::as_u64),
        });
    }
    Ok(StreamEvent::Text(value.get("response").and_then(Value::as_str).unwrap_or_default().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_travels_as_num_predict() {
        let settings = crate::settings::tests::example();
        let generation = Generation { model: "m", system: None, prompt: "p", settings: &settings };
        let (path, body) = request(&generation, false);
        assert_eq!(path, "/api/generate");
        assert_eq!(body["options"]["num_predict"], 500);
        assert!(body["options"].get("max_tokens").is_none());
        assert!(body["options"].get("seed").is_none(), "seed only when asked for");
    }

    #[test]
    fn an_error_line_ends_the_stream_with_its_message() {
        let error = stream_event(br#"{"error":"out of memory"}"#).unwrap_err();
        assert_eq!(error, ApiError::BadGateway { message: "out of memory".into() });
    }

    #[test]
    fn text_on_the_final_line_is_kept() {
        let last = stream_event(br#"{"response":" end","done":true,"eval_count":3}"#).unwrap();
        assert_eq!(last, StreamEvent::Done { text: " end".into(), tokens_generated: Some(3) });
    }
}
