//! Ollama's REST API: POST /api/generate (the seed's prompts and the Ollama
//! dialect's) or /api/chat (chats from either dialect), whole or as NDJSON
//! lines.

use serde_json::{Map, Value, json};

use super::{Completion, Ending, Generation, Listing, Protocol, StreamEvent};
use crate::error::ApiError;
use crate::question::{Family, Message, Question};
use crate::stored::Durations;

/// Ollama's REST API.
pub const PROTOCOL: Protocol = Protocol {
    name: "ollama",
    request,
    completion,
    stream_event,
    listing: Listing { path: "/api/tags", array: "models", name: "name" },
};

/// The path and body asking Ollama for `generation`: every setting is an
/// option under its own name, but `max_tokens` is Ollama's `num_predict`;
/// a system prompt is Ollama's `system`.
fn request(generation: &Generation, stream: bool) -> (&'static str, Value) {
    if let Some(question) = generation.question {
        return dialect_request(generation, question, stream);
    }
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

/// A dialect's question, in Ollama's own fields: nothing the client left
/// out is added, so the model's own defaults apply as they would at Ollama.
fn dialect_request(generation: &Generation, question: &Question, stream: bool) -> (&'static str, Value) {
    let mut body = Map::new();
    body.insert("model".into(), json!(generation.model));
    body.insert("stream".into(), json!(stream));
    if !question.options.is_empty() {
        body.insert("options".into(), json!(question.options));
    }
    let optional = [
        ("tools", &question.tools),
        ("format", &question.format),
        ("think", &question.think),
        ("keep_alive", &question.keep_alive),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body.insert(name.into(), value.clone());
        }
    }
    let path = match question.family {
        Family::Chat => {
            let sent = question.messages_sent(generation.system, generation.prompt);
            let messages = sent.iter().map(Message::to_ollama).collect();
            body.insert("messages".into(), Value::Array(messages));
            "/api/chat"
        }
        Family::Generate => {
            let parts = &question.prompt_parts;
            body.insert("prompt".into(), json!(generation.prompt));
            // A plugin's system prompt takes the client's place.
            let system = generation.system.map(str::to_string).or_else(|| parts.system.clone());
            let strings = [("suffix", &parts.suffix), ("system", &system), ("template", &parts.template)];
            for (name, value) in strings {
                if let Some(value) = value {
                    body.insert(name.into(), json!(value));
                }
            }
            if let Some(raw) = parts.raw {
                body.insert("raw".into(), json!(raw));
            }
            if let Some(context) = &parts.context {
                body.insert("context".into(), context.clone());
            }
            if !parts.images.is_empty() {
                body.insert("images".into(), json!(parts.images));
            }
            "/api/generate"
        }
    };
    (path, Value::Object(body))
}

/// The text of an answer or a line: `/api/generate`'s `response`, or
/// `/api/chat`'s `message.content`.
fn text_of(value: &Value) -> Option<&str> {
    value
        .get("response")
        .and_then(Value::as_str)
        .or_else(|| value.pointer("/message/content").and_then(Value::as_str))
}

/// How an answer ended: its counts, `done_reason` and tool calls.
fn ending(value: &Value, text: String) -> Ending {
    let mut ending = Ending {
        text,
        tokens_generated: value.get("eval_count").and_then(Value::as_u64),
        prompt_tokens: value.get("prompt_eval_count").and_then(Value::as_u64),
        done_reason: value.get("done_reason").and_then(Value::as_str).map(str::to_string),
        ..Ending::default()
    };
    if let Some(calls) = value.pointer("/message/tool_calls") {
        ending.tool_calls.add_ollama(calls);
    }
    ending.thinking = thinking_of(value).to_string();
    let ns = |field: &str| value.get(field).and_then(Value::as_u64);
    ending.durations = Durations {
        total_ns: ns("total_duration"),
        prompt_eval_ns: ns("prompt_eval_duration"),
        eval_ns: ns("eval_duration"),
    };
    ending
}

/// A line's or answer's thoughts: `/api/chat`'s `message.thinking`, or
/// `/api/generate`'s `thinking`.
fn thinking_of(value: &Value) -> &str {
    value
        .pointer("/message/thinking")
        .or_else(|| value.get("thinking"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A whole answer: `response` (or `message.content`), `model`, the counts.
fn completion(answer: &Value, model: &str) -> Result<Completion, ApiError> {
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Err(ApiError::BadGateway { message: error.to_string() });
    }
    let text = text_of(answer)
        .ok_or_else(|| ApiError::BadGateway { message: "answer has no 'response' text".into() })?;
    let mut ending = ending(answer, String::new());
    ending.tokens_generated.get_or_insert(0);
    Ok(Completion {
        text: text.to_string(),
        model: answer.get("model").and_then(Value::as_str).unwrap_or(model).to_string(),
        ending,
    })
}

/// One NDJSON line: `{"response": "...", "done": false}` (or
/// `{"message": {"content": "..."}}`), the final `{"done": true,
/// "eval_count": N}`, or `{"error": "..."}`.
fn stream_event(line: &[u8]) -> Result<StreamEvent, ApiError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(StreamEvent::Skip);
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|error| ApiError::BadGateway { message: format!("unreadable stream line: {error}") })?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(ApiError::BadGateway { message: error.to_string() });
    }
    let text = text_of(&value).unwrap_or_default().to_string();
    if value.get("done").and_then(Value::as_bool) == Some(true) {
        // Ollama's final line carries statistics and, usually, an empty
        // text; text there is the answer's last piece all the same.
        return Ok(StreamEvent::Done(ending(&value, text)));
    }
    match value.pointer("/message/tool_calls") {
        Some(calls) if text.is_empty() && calls.as_array().is_some_and(|calls| !calls.is_empty()) => {
            Ok(StreamEvent::ToolCalls(calls.clone()))
        }
        _ if text.is_empty() && !thinking_of(&value).is_empty() => {
            Ok(StreamEvent::Thinking(thinking_of(&value).to_string()))
        }
        _ => Ok(StreamEvent::Text(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_travels_as_num_predict() {
        let settings = crate::settings::tests::example();
        let generation =
            Generation { model: "m", system: None, prompt: "p", settings: &settings, question: None };
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
        let expected = Ending { text: " end".into(), tokens_generated: Some(3), ..Ending::default() };
        assert_eq!(last, StreamEvent::Done(expected));
    }
}
