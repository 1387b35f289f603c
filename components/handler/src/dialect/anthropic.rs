//! Anthropic's Messages API, `POST /v1/messages` and
//! `POST /v1/messages/count_tokens`, as the Anthropic SDKs and Claude Code
//! send them (`anthropic-version` 2023-06-01 and later): this module reads
//! a request into the one pipeline's [`Question`]; [`super::anthropic_frames`]
//! puts the answer and the errors in Anthropic's shapes.
//!
//! - `max_tokens` is required, as Anthropic requires it; `model` is too,
//!   unless a current model is set (then an absent one means it).
//! - `system` (a string or text blocks) comes first; `messages` (a
//!   `system` turn among them too, as Claude Code sends) carry text,
//!   base64 images, `tool_use` (an assistant's call) and `tool_result` (the
//!   user's answer to one, matched to its call's name by `tool_use_id`);
//!   an assistant's `thinking` blocks go back as its thoughts.
//! - `temperature` defaults to Anthropic's 1, sent explicitly so either
//!   backend protocol answers alike; `top_p`, `top_k`, `stop_sequences`;
//!   `thinking` enabled (any budget) asks a thinking model to think;
//!   adaptive leaves it to the model.
//! - `tool_choice` `auto` and `none` (no tools offered) are honoured; `any`
//!   and a named tool are refused by name: no backend here can force a call.
//! - Unknown fields are ignored, as Anthropic ignores them; `metadata` and
//!   `cache_control` marks change nothing and are not in the key.
//! - The API key (`x-api-key` or `Authorization: Bearer`) is accepted and
//!   not checked.

use std::collections::BTreeMap;
use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::Route;
use super::anthropic_frames::{MessagesFraming, error_response};
use super::{bool_field, function_tool, generation_request, object_body, serve_read, string_field};
use crate::backend::Kind;
use crate::config::Config;
use crate::error::ApiError;
use crate::question::{Family, Message, Question};

/// Anthropic's default temperature.
const ANTHROPIC_DEFAULT_TEMPERATURE: f64 = 1.0;
/// Characters per token where no tokenizer can count (a common rule of
/// thumb for English text; `count_tokens` says when it estimated).
const CHARS_PER_TOKEN_ESTIMATE: usize = 4;

/// Anthropic's Messages API.
pub const ROUTES: &[Route] = &[
    Route::exact("/v1/messages", &["POST"], messages),
    Route::exact("/v1/messages/count_tokens", &["POST"], count_tokens),
];

/// POST /v1/messages.
pub fn messages(request: &Request) -> Reply {
    let started = Instant::now();
    let read = object_body(request).and_then(|body| {
        let (question, prompt) = question(&body, true)?;
        let stream = bool_field(&body, "stream")?.unwrap_or(false);
        let generation = generation_request(request, &body, question, prompt, stream)?;
        let framing = MessagesFraming::new(generation.primary_model());
        Ok((generation, framing))
    });
    serve_read(request, started, read, error_response)
}

/// POST /v1/messages/count_tokens: `{"input_tokens": N}` for the request's
/// system, messages and tools. Counted by the backend's own tokenizer over
/// its chat template where it has them (llama.cpp's `/apply-template` and
/// `/tokenize`); else estimated at four characters a token. The header
/// `x-token-count` says which.
pub fn count_tokens(request: &Request) -> Reply {
    let counted = object_body(request).and_then(|body| {
        let (question, prompt) = question(&body, false)?;
        let messages = question.messages_sent(None, &prompt);
        let tools = question.tools.as_ref().map(Value::to_string).unwrap_or_default();
        let (tokens, how) = match tokenized(&messages, &tools) {
            Some(tokens) => (tokens, "tokenizer"),
            None => {
                let chars: usize =
                    messages.iter().map(|message| message.content.chars().count()).sum::<usize>()
                        + tools.chars().count();
                (chars.div_ceil(CHARS_PER_TOKEN_ESTIMATE), "estimate")
            }
        };
        Ok(Response::json(200, &json!({"input_tokens": tokens})).with_header("x-token-count", how))
    });
    counted.unwrap_or_else(|error| error_response(&error)).into()
}

/// Tokens of `messages` (through the model's chat template) and `tools` by
/// the backend's tokenizer, where the backend has llama.cpp's endpoints.
fn tokenized(messages: &[Message], tools: &str) -> Option<usize> {
    let backend = &Config::get().backend;
    if backend.kind() != Kind::OpenAi {
        return None;
    }
    let plain: Vec<Value> =
        messages.iter().map(|message| json!({"role": message.role, "content": message.content})).collect();
    let asked = json!({"messages": plain}).to_string();
    let (status, bytes) = backend.call("POST", "/apply-template", Some(asked.as_bytes())).ok()?;
    let templated: Value = serde_json::from_slice(&bytes).ok().filter(|_| status == 200)?;
    let text = format!("{}{tools}", templated.get("prompt")?.as_str()?);
    let asked = json!({"content": text, "add_special": true}).to_string();
    let (status, bytes) = backend.call("POST", "/tokenize", Some(asked.as_bytes())).ok()?;
    let tokens: Value = serde_json::from_slice(&bytes).ok().filter(|_| status == 200)?;
    Some(tokens.get("tokens")?.as_array()?.len())
}

/// The question in `body` and the last user message's text (what the key's
/// prompt hash and the logs see); `max_tokens` is required when `answering`.
fn question(body: &Map<String, Value>, answering: bool) -> Result<(Question, String), ApiError> {
    let mut question = Question::new(Family::Chat);
    if let Some(system) = system(body)? {
        question.messages.push(Message { role: "system".into(), content: system, ..Message::default() });
    }
    question.messages.extend(turns(body)?);
    question.options = options(body, answering)?;
    question.tools = tools(body)?;
    question.think =
        match body.get("thinking").and_then(|thinking| thinking.get("type")).and_then(Value::as_str) {
            // Adaptive leaves it to the model (Claude Code sends it by default;
            // `think: true` would be refused by a model that cannot think).
            None | Some("disabled" | "adaptive") => None,
            Some("enabled") => Some(json!(true)),
            Some(other) => {
                return Err(ApiError::invalid("thinking.type", format!("unknown thinking type '{other}'")));
            }
        };
    let last_user = question.messages.iter().rev().find(|message| message.role == "user");
    let prompt = last_user.map(|message| message.content.clone()).unwrap_or_default();
    Ok((question, prompt))
}

/// `system`: a string, or text blocks joined by newlines.
fn system(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("system") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone()).filter(|text| !text.is_empty())),
        Some(Value::Array(blocks)) => {
            let texts: Result<Vec<&str>, ApiError> = blocks
                .iter()
                .enumerate()
                .map(|(index, block)| {
                    block.get("text").and_then(Value::as_str).ok_or_else(|| {
                        ApiError::invalid(&format!("system[{index}]"), "system blocks must be text blocks")
                    })
                })
                .collect();
            Ok(Some(texts?.join("\n")).filter(|text| !text.is_empty()))
        }
        Some(_) => Err(ApiError::invalid("system", "system must be a string or a list of text blocks")),
    }
}

/// `messages` in the neutral form. A user turn's `tool_result` blocks
/// become tool messages (before its text, as the results answer the turn
/// before), each named after the call it answers.
fn turns(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) =
        body.get("messages").filter(|items| items.as_array().is_some_and(|items| !items.is_empty()))
    else {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    };
    let mut call_names: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = |name: &str| format!("messages[{index}].{name}");
        let role = match item.get("role").and_then(Value::as_str) {
            Some(role @ ("user" | "assistant" | "system")) => role,
            _ => {
                return Err(ApiError::invalid(
                    &at("role"),
                    "role must be \"user\", \"assistant\" or \"system\"",
                ));
            }
        };
        let mut message = Message { role: role.into(), ..Message::default() };
        let blocks = match item.get("content") {
            Some(Value::String(text)) => {
                message.content = text.clone();
                out.push(message);
                continue;
            }
            Some(Value::Array(blocks)) => blocks,
            _ => {
                return Err(ApiError::invalid(
                    &at("content"),
                    "content must be a string or a list of blocks",
                ));
            }
        };
        let (mut calls, mut answered) = (Vec::new(), false);
        for (number, block) in blocks.iter().enumerate() {
            let at = |name: &str| format!("messages[{index}].content[{number}].{name}");
            let text = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or_default();
            match block.get("type").and_then(Value::as_str) {
                Some("text") => message.content.push_str(text("text")),
                Some("image") => message.images.push(image(block, &at("source"))?),
                Some("thinking") => message.thinking = Some(text("thinking").to_string()),
                Some("redacted_thinking") => {}
                Some("tool_use") if role == "assistant" => {
                    call_names.insert(text("id").to_string(), text("name").to_string());
                    let input = block.get("input").cloned().unwrap_or(json!({}));
                    calls.push(json!({"function": {"name": text("name"), "arguments": input}}));
                }
                Some("tool_result") if role == "user" => {
                    let name = call_names.get(text("tool_use_id")).cloned();
                    let Some(name) = name else {
                        return Err(ApiError::invalid(
                            &at("tool_use_id"),
                            "answers no tool_use of an earlier turn",
                        ));
                    };
                    let content = tool_result_text(block.get("content"), &at("content"))?;
                    out.push(Message {
                        role: "tool".into(),
                        content,
                        tool_name: Some(name),
                        ..Message::default()
                    });
                    answered = true;
                }
                other => {
                    let kind = other.unwrap_or("(none)");
                    return Err(ApiError::invalid(
                        &at("type"),
                        format!("a {role} message cannot hold a '{kind}' block"),
                    ));
                }
            }
        }
        if !calls.is_empty() {
            message.tool_calls = Some(Value::Array(calls));
        }
        // A turn that only answers calls adds no empty user message.
        if !(answered && message.content.is_empty() && message.images.is_empty()) {
            out.push(message);
        }
    }
    Ok(out)
}

/// A base64 image block's data (this service fetches no URL).
fn image(block: &Value, at: &str) -> Result<String, ApiError> {
    match block.pointer("/source/type").and_then(Value::as_str) {
        Some("base64") => block
            .pointer("/source/data")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(at, "a base64 image needs its data")),
        _ => Err(ApiError::invalid(at, "images must be base64 sources; this service fetches nothing")),
    }
}

/// A `tool_result`'s content: a string, or its text blocks joined.
fn tool_result_text(content: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => Ok(block.get("text").and_then(Value::as_str).unwrap_or_default()),
                _ => Err(ApiError::invalid(at, "a tool result's blocks must be text")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        Some(_) => Err(ApiError::invalid(at, "a tool result's content must be a string or text blocks")),
    }
}

/// The sampling fields as Ollama options.
fn options(body: &Map<String, Value>, answering: bool) -> Result<BTreeMap<String, Value>, ApiError> {
    let mut options = BTreeMap::new();
    match body.get("max_tokens") {
        Some(tokens) if tokens.as_u64().is_some_and(|tokens| tokens >= 1) => {
            options.insert("num_predict".into(), tokens.clone());
        }
        None | Some(Value::Null) if !answering => {}
        None | Some(Value::Null) => {
            return Err(ApiError::invalid("max_tokens", "max_tokens: Field required"));
        }
        Some(_) => {
            return Err(ApiError::invalid("max_tokens", "max_tokens must be a whole number of at least 1"));
        }
    }
    let temperature = unit_number(body, "temperature")?.unwrap_or(json!(ANTHROPIC_DEFAULT_TEMPERATURE));
    options.insert("temperature".into(), temperature);
    if let Some(top_p) = unit_number(body, "top_p")? {
        options.insert("top_p".into(), top_p);
    }
    match body.get("top_k") {
        None | Some(Value::Null) => {}
        Some(top_k) if top_k.as_u64().is_some() => {
            options.insert("top_k".into(), top_k.clone());
        }
        Some(_) => return Err(ApiError::invalid("top_k", "top_k must be a whole number")),
    }
    match body.get("stop_sequences") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) if stops.is_empty() => {}
        Some(Value::Array(stops)) if stops.iter().all(Value::is_string) => {
            options.insert("stop".into(), json!(stops));
        }
        Some(_) => {
            return Err(ApiError::invalid("stop_sequences", "stop_sequences must be a list of strings"));
        }
    }
    Ok(options)
}

/// An optional number in [0, 1].
fn unit_number(body: &Map<String, Value>, name: &str) -> Result<Option<Value>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) if value.as_f64().is_some_and(|number| (0.0..=1.0).contains(&number)) => {
            Ok(Some(value.clone()))
        }
        Some(_) => Err(ApiError::invalid(name, format!("{name} must be a number between 0 and 1"))),
    }
}

/// `tools` as functions (Ollama's and OpenAI's shape), or none when there
/// are none or `tool_choice` is `none`.
fn tools(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let offered = match body.get("tool_choice").and_then(|choice| choice.get("type")).map(Value::as_str) {
        None | Some(Some("auto")) => true,
        Some(Some("none")) => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "tool_choice",
                "only tool_choice auto and none are supported: no backend here can force a tool call",
            ));
        }
    };
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let functions: Result<Vec<Value>, ApiError> = tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            if tool.get("type").and_then(Value::as_str).is_some_and(|kind| kind != "custom") {
                let kind = tool["type"].as_str().unwrap_or_default();
                return Err(ApiError::invalid(
                    &format!("tools[{index}].type"),
                    format!(
                        "the server tool '{kind}' is not supported; tools must be functions the client runs"
                    ),
                ));
            }
            let name = string_field(tool.as_object().unwrap_or(&Map::new()), "name")?
                .ok_or_else(|| ApiError::invalid(&format!("tools[{index}].name"), "a tool needs a name"))?;
            Ok(function_tool(&name, tool.get("description"), tool.get("input_schema")))
        })
        .collect();
    let functions = functions?;
    Ok((offered && !functions.is_empty()).then_some(Value::Array(functions)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: Value) -> Result<(Question, String), ApiError> {
        question(body.as_object().unwrap(), true)
    }

    #[test]
    fn a_tool_result_becomes_a_tool_message_named_after_its_call() {
        let (question, prompt) = read(json!({"max_tokens": 8, "system": [{"type": "text", "text": "Be brief."}], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]}]},
        ]}))
        .unwrap();
        let roles: Vec<&str> = question.messages.iter().map(|message| message.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"], "no empty user turn after the result");
        assert_eq!(
            question.messages[2].tool_calls,
            Some(json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]))
        );
        assert_eq!(question.messages[3].tool_name.as_deref(), Some("get_weather"));
        assert_eq!(question.messages[3].content, "sunny");
        assert_eq!(prompt, "Weather in Paris?");
    }

    #[test]
    fn metadata_and_cache_marks_leave_the_question_alone_and_sampling_does_not() {
        let plain = json!({"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]});
        let mut marked = plain.clone();
        marked["metadata"] = json!({"user_id": "u"});
        marked["messages"][0]["content"][0]["cache_control"] = json!({"type": "ephemeral"});
        assert_eq!(read(plain.clone()).unwrap().0.canonical(), read(marked).unwrap().0.canonical());
        let mut warmer = plain.clone();
        warmer["temperature"] = json!(0.2);
        assert_ne!(read(plain).unwrap().0.canonical(), read(warmer).unwrap().0.canonical());
    }

    #[test]
    fn max_tokens_is_required_to_answer_but_not_to_count() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        let error = read(body.clone()).unwrap_err();
        assert!(matches!(&error, ApiError::Invalid { field, .. } if field == "max_tokens"), "{error:?}");
        assert!(question(body.as_object().unwrap(), false).is_ok());
    }
}
