//! OpenAI-compatible servers (llama.cpp's server, vLLM, LM Studio):
//! POST /v1/chat/completions, whole or as server-sent events.

use serde_json::{Map, Value, json};

use super::{Completion, Ending, Generation, Listing, Protocol, StreamEvent};
use crate::error::ApiError;
use crate::question::{Family, Message, Question};
use crate::stored::Durations;

/// An OpenAI-compatible server's API.
pub const PROTOCOL: Protocol = Protocol {
    name: "openai",
    request,
    completion,
    stream_event,
    listing: Listing { path: "/v1/models", array: "data", name: "id" },
};

/// Ollama options an OpenAI-compatible server reads under the same name
/// (`top_k`, `min_p`, `typical_p` and `repeat_penalty` are not OpenAI's,
/// but llama.cpp and vLLM read them and others ignore them). The rest
/// (`num_ctx`, hardware) are the server's own settings there.
const SHARED_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
];

/// The path and body asking for `generation`. `top_k` and `repeat_penalty`
/// are not OpenAI's, but llama.cpp and vLLM read them and others ignore them.
fn request(generation: &Generation, stream: bool) -> (&'static str, Value) {
    let raw = generation.question.is_some_and(|question| {
        question.family == Family::Generate && question.prompt_parts.raw == Some(true)
    });
    let mut body = match generation.question {
        Some(question) => dialect_body(generation, question),
        None => {
            let mut body = generation.settings.to_json();
            body.insert(
                "messages".into(),
                Value::Array(prompt_messages(generation.system, generation.prompt)),
            );
            body
        }
    };
    body.insert("model".into(), json!(generation.model));
    body.insert("stream".into(), json!(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if raw {
        // A raw prompt is text to continue, not a user's message: no chat template.
        body.remove("messages");
        body.insert("prompt".into(), json!(generation.prompt));
        return ("/v1/completions", Value::Object(body));
    }
    ("/v1/chat/completions", Value::Object(body))
}

/// A prompt as chat messages: the system prompt, then the prompt as the user's.
fn prompt_messages(system: Option<&str>, prompt: &str) -> Vec<Value> {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    messages
}

/// A dialect's question as a chat completion: its messages (a generate
/// question's prompt as the user's), its options under OpenAI's names, its
/// format as `response_format`.
fn dialect_body(generation: &Generation, question: &Question) -> Map<String, Value> {
    let mut body = Map::new();
    let messages = match question.family {
        Family::Chat => chat_messages(&question.messages_sent(generation.system, generation.prompt)),
        Family::Generate => {
            let system = generation.system.or(question.prompt_parts.system.as_deref());
            let mut messages = prompt_messages(system, generation.prompt);
            // Ollama's images ride with the prompt; here they are the user's parts.
            if !question.prompt_parts.images.is_empty() {
                let user = Message {
                    role: "user".into(),
                    content: generation.prompt.to_string(),
                    images: question.prompt_parts.images.clone(),
                    ..Message::default()
                };
                messages.pop();
                messages.push(chat_message(&user));
            }
            messages
        }
    };
    body.insert("messages".into(), Value::Array(messages));
    for (name, value) in &question.options {
        if SHARED_OPTIONS.contains(&name.as_str()) {
            body.insert(name.clone(), value.clone());
        }
    }
    if let Some(max_tokens) = question.options.get("num_predict") {
        body.insert("max_tokens".into(), max_tokens.clone());
    }
    if let Some(tools) = &question.tools {
        body.insert("tools".into(), tools.clone());
    }
    if let Some(choice) = &question.tool_choice {
        body.insert("tool_choice".into(), choice.clone());
    }
    match &question.format {
        Some(Value::String(format)) if format == "json" => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(schema @ Value::Object(_)) => {
            let mut json_schema = json!({"name": "answer", "schema": schema});
            if let Some(Value::Object(meta)) = &question.format_meta {
                for (field, value) in meta {
                    json_schema[field] = value.clone();
                }
            }
            body.insert("response_format".into(), json!({"type": "json_schema", "json_schema": json_schema}));
        }
        _ => {}
    }
    // Ollama's `think`: a level is OpenAI's `reasoning_effort`; on or off
    // is the chat template's switch, which llama.cpp and vLLM both read.
    match &question.think {
        Some(level @ Value::String(_)) => {
            body.insert("reasoning_effort".into(), level.clone());
        }
        Some(Value::Bool(on)) => {
            body.insert("chat_template_kwargs".into(), json!({"enable_thinking": on}));
        }
        _ => {}
    }
    body
}

/// The conversation in OpenAI's shape. A tool's answer must name the call
/// it answers (`tool_call_id`); Ollama's name only the tool, so such a
/// message gets the id of the latest call of that tool (the ids are the
/// `call_N` that [`crate::tool_calls::to_openai`] gives).
fn chat_messages(messages: &[Message]) -> Vec<Value> {
    let mut calls: Vec<(String, String)> = Vec::new();
    messages
        .iter()
        .map(|message| {
            let mut out = chat_message(message);
            if let Some(Value::Array(made)) = out.get("tool_calls") {
                calls = made
                    .iter()
                    .filter_map(|call| {
                        Some((
                            call["id"].as_str()?.to_string(),
                            call.pointer("/function/name")?.as_str()?.to_string(),
                        ))
                    })
                    .collect();
            }
            if message.role == "tool" && message.tool_call_id.is_none() {
                let answered = message.tool_name.as_deref();
                let id =
                    calls.iter().rev().find(|(_, name)| Some(name.as_str()) == answered).or(calls.last());
                if let Some((id, _)) = id {
                    out["tool_call_id"] = json!(id);
                }
            }
            out
        })
        .collect()
}

/// One message in OpenAI's shape: images as data-URL parts, tool calls with
/// their arguments as a JSON string ([`crate::tool_calls::to_openai`]).
fn chat_message(message: &Message) -> Value {
    let content = if message.images.is_empty() {
        json!(message.content)
    } else {
        let mut parts = vec![json!({"type": "text", "text": message.content})];
        for image in &message.images {
            let url = format!("data:image/png;base64,{image}");
            parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
        }
        Value::Array(parts)
    };
    let mut out = json!({"role": message.role, "content": content});
    if let Some(calls) = &message.tool_calls {
        out["tool_calls"] = crate::tool_calls::to_openai(calls);
    }
    if let Some(id) = &message.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    if let Some(name) = &message.tool_name {
        out["name"] = json!(name);
    }
    out
}

/// How a choice ended: `finish_reason` and the usage counts.
fn ending(answer: &Value, choice: Option<&Value>) -> Ending {
    let mut ending = Ending {
        text: String::new(),
        tokens_generated: answer.pointer("/usage/completion_tokens").and_then(Value::as_u64),
        prompt_tokens: answer.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
        done_reason: choice
            .and_then(|choice| choice.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Ending::default()
    };
    if let Some(calls) = choice.and_then(|choice| choice.pointer("/message/tool_calls")) {
        ending.tool_calls.add_openai(calls);
    }
    let thinking =
        choice.and_then(|choice| choice.pointer("/message/reasoning_content")).and_then(Value::as_str);
    ending.thinking = thinking.unwrap_or_default().to_string();
    // llama.cpp's own `timings`, in milliseconds (other servers send none).
    let ns = |field: &str| {
        let ms = answer.get("timings")?.get(field)?.as_f64()?;
        Some((ms * 1e6) as u64)
    };
    ending.durations =
        Durations { total_ns: None, prompt_eval_ns: ns("prompt_ms"), eval_ns: ns("predicted_ms") };
    ending
}

/// A whole answer: `choices[0].message.content`, `usage.completion_tokens`.
fn completion(answer: &Value, model: &str) -> Result<Completion, ApiError> {
    if let Some(text) = answer.pointer("/choices/0/text").and_then(Value::as_str) {
        // A /v1/completions answer.
        let mut ending = ending(answer, answer.pointer("/choices/0"));
        ending.tokens_generated.get_or_insert(0);
        return Ok(Completion { text: text.to_string(), model: model.to_string(), ending });
    }
    let message = answer
        .pointer("/choices/0/message")
        .ok_or_else(|| ApiError::BadGateway { message: "answer has no choices[0].message".into() })?;
    // A message that only calls tools has no content (null).
    let text = match message.get("content") {
        Some(Value::String(text)) => text.as_str(),
        None | Some(Value::Null) if message.get("tool_calls").is_some() => "",
        _ => return Err(ApiError::BadGateway { message: "answer has no choices[0].message.content".into() }),
    };
    let mut ending = ending(answer, answer.pointer("/choices/0"));
    ending.tokens_generated.get_or_insert(0);
    Ok(Completion { text: text.to_string(), model: model.to_string(), ending })
}

/// One SSE line: `data: {...}` with `choices[0].delta.content`, a usage-only
/// chunk, or `data: [DONE]`. Other lines (comments, blank) are skipped. A
/// `finish_reason` is remembered by the caller only through the usage chunk
/// or `[DONE]`, so it travels in the text-free events.
fn stream_event(line: &[u8]) -> Result<StreamEvent, ApiError> {
    let line = std::str::from_utf8(line).unwrap_or_default().trim();
    let Some(data) = line.strip_prefix("data:").map(str::trim) else {
        return Ok(StreamEvent::Skip);
    };
    if data == "[DONE]" {
        return Ok(StreamEvent::Done(Ending::default()));
    }
    let value: Value = serde_json::from_str(data)
        .map_err(|error| ApiError::BadGateway { message: format!("unreadable stream event: {error}") })?;
    if let Some(error) = value.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or("stream error");
        return Err(ApiError::BadGateway { message: message.to_string() });
    }
    if let Some(fragments) = value.pointer("/choices/0/delta/tool_calls") {
        return Ok(StreamEvent::ToolCallFragments(fragments.clone()));
    }
    // llama.cpp and vLLM stream a reasoning model's thoughts so.
    if let Some(thinking) = value.pointer("/choices/0/delta/reasoning_content").and_then(Value::as_str)
        && !thinking.is_empty()
    {
        return Ok(StreamEvent::Thinking(thinking.to_string()));
    }
    let text = value
        .pointer("/choices/0/delta/content")
        .or_else(|| value.pointer("/choices/0/text"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if value.pointer("/usage/completion_tokens").is_some() && text.is_empty() {
        return Ok(StreamEvent::Done(ending(&value, value.pointer("/choices/0"))));
    }
    match value.pointer("/choices/0/finish_reason").and_then(Value::as_str) {
        Some(reason) if text.is_empty() => Ok(StreamEvent::Finish(reason.to_string())),
        _ if !text.is_empty() => Ok(StreamEvent::Text(text.to_string())),
        _ => Ok(StreamEvent::Skip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn sent(question: &Question, prompt: &str) -> Value {
        let settings = Settings {
            temperature: 0.8,
            max_tokens: 8,
            top_p: 0.9,
            top_k: 40,
            repeat_penalty: 1.1,
            stop: Vec::new(),
            seed: None,
        };
        let generation =
            Generation { model: "m", system: None, prompt, settings: &settings, question: Some(question) };
        request(&generation, false).1
    }

    #[test]
    fn what_a_dialect_asked_reaches_the_server() {
        let mut question = Question::new(Family::Chat);
        question.messages = vec![Message { role: "user".into(), content: "hi".into(), ..Message::default() }];
        question.format = Some(serde_json::json!({"type": "object"}));
        question.format_meta = Some(serde_json::json!({"name": "reply", "strict": true}));
        question.tool_choice = Some(serde_json::json!("required"));
        question.think = Some(serde_json::json!("high"));
        let body = sent(&question, "hi");
        assert_eq!(body["response_format"]["json_schema"]["name"], "reply");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["reasoning_effort"], "high");
        question.think = Some(serde_json::json!(true));
        assert_eq!(
            sent(&question, "hi")["chat_template_kwargs"],
            serde_json::json!({"enable_thinking": true})
        );
        let mut generate = Question::new(Family::Generate);
        generate.prompt_parts.images = vec!["aGk=".into()];
        let body = sent(&generate, "what is it");
        let parts = &body["messages"][0]["content"];
        assert_eq!(parts[0]["text"], "what is it");
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,aGk=", "{body}");
    }

    #[test]
    fn a_tool_answer_in_ollamas_shape_names_the_call_it_answers() {
        let call = serde_json::json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]);
        let conversation = [
            Message { role: "user".into(), content: "Weather?".into(), ..Message::default() },
            Message { role: "assistant".into(), tool_calls: Some(call), ..Message::default() },
            Message {
                role: "tool".into(),
                content: "sunny".into(),
                tool_name: Some("get_weather".into()),
                ..Message::default()
            },
        ];
        let sent = chat_messages(&conversation);
        assert_eq!(sent[1]["tool_calls"][0]["id"], "call_0");
        assert_eq!(sent[1]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(sent[2]["tool_call_id"], "call_0");
    }

    #[test]
    fn server_sent_events_become_text_then_done() {
        let chunk = br#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#;
        assert_eq!(stream_event(chunk).unwrap(), StreamEvent::Text("Hi".into()));
        let role = br#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#;
        assert_eq!(stream_event(role).unwrap(), StreamEvent::Skip);
        let usage = br#"data: {"choices":[],"usage":{"completion_tokens":7}}"#;
        assert_eq!(
            stream_event(usage).unwrap(),
            StreamEvent::Done(Ending { tokens_generated: Some(7), ..Ending::default() })
        );
        assert_eq!(stream_event(b"data: [DONE]").unwrap(), StreamEvent::Done(Ending::default()));
        let last = br#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}"#;
        assert_eq!(stream_event(last).unwrap(), StreamEvent::Finish("length".into()));
        assert_eq!(stream_event(b": ping").unwrap(), StreamEvent::Skip);
    }
}
