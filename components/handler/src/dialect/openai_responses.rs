//! OpenAI's Responses API, `POST /v1/responses`, stateless as Ollama's is:
//! this module reads a request into the one pipeline's [`Question`];
//! [`super::openai_responses_frames`] frames the answer.
//!
//! - `input` is a string or items: messages (`user`, `assistant`,
//!   `system`, `developer`; text as a string or `input_text` /
//!   `output_text` parts, `input_image` parts as data URLs), the model's
//!   `function_call`s and their `function_call_output`s (matched by
//!   `call_id`); `reasoning` items are the model's own and skipped.
//! - `instructions` comes first as the system message; `tools` are
//!   functions (`tool_choice` as chat reads it: `auto`, `none`,
//!   `required`, or a named function); `text.format` is `text`,
//!   `json_object` or `json_schema`; `max_output_tokens`, `temperature` and
//!   `top_p` (OpenAI's defaults, 1 and 1, sent explicitly);
//!   `reasoning.effort` asks a thinking model to think at that effort.
//! - Nothing is kept between requests: `previous_response_id`,
//!   `store: true`, `background: true` and `conversation` are refused with
//!   a 400 that says so. Errors are OpenAI's `{"error": {...}}`.

use std::collections::BTreeMap;
use std::time::Instant;

use llm_service_sdk::http::{Reply, Request};
use serde_json::{Map, Value, json};

use super::openai_params::{apply_tool_choice, effort_as_think, error_response, sampling_options};
use super::openai_responses_frames::{Echo, ResponsesFraming};
use super::{bool_field, function_tool, generation_request, object_body, serve_read};
use crate::error::ApiError;
use crate::question::{Family, Message, Question};

/// POST /v1/responses.
pub fn responses(request: &Request) -> Reply {
    let started = Instant::now();
    let read = object_body(request).and_then(|body| {
        refuse_state(&body)?;
        let (question, prompt) = question(&body)?;
        let stream = bool_field(&body, "stream")?.unwrap_or(false);
        let echo = Echo::of(&body, &question);
        let generation = generation_request(request, &body, question, prompt, stream)?;
        let framing = ResponsesFraming::new(generation.primary_model(), echo);
        Ok((generation, framing))
    });
    serve_read(request, started, read, error_response)
}

/// What only a service that keeps responses could do, refused by name.
fn refuse_state(body: &Map<String, Value>) -> Result<(), ApiError> {
    let stateless = |field: &str| {
        ApiError::invalid(
            field,
            format!(
                "{field} needs stored responses; this service is stateless (as Ollama's /v1/responses is): send the whole conversation in input"
            ),
        )
    };
    for field in ["previous_response_id", "conversation"] {
        if body.get(field).is_some_and(|value| !value.is_null()) {
            return Err(stateless(field));
        }
    }
    for field in ["store", "background"] {
        if body.get(field) == Some(&Value::Bool(true)) {
            return Err(stateless(field));
        }
    }
    Ok(())
}

/// The question in `body` and the last user message's text.
fn question(body: &Map<String, Value>) -> Result<(Question, String), ApiError> {
    let mut question = Question::new(Family::Chat);
    if let Some(instructions) = super::string_field(body, "instructions")?.filter(|text| !text.is_empty()) {
        question.messages.push(Message {
            role: "system".into(),
            content: instructions,
            ..Message::default()
        });
    }
    question.messages.extend(input(body)?);
    if !question.messages.iter().any(|message| message.role != "system") {
        return Err(ApiError::invalid("input", "input must be a non-empty string or list of items"));
    }
    let mut options = sampling_options(body)?;
    if let Some(tokens) = body.get("max_output_tokens").filter(|tokens| !tokens.is_null()) {
        let tokens = tokens.as_u64().filter(|tokens| *tokens >= 1).ok_or_else(|| {
            ApiError::invalid("max_output_tokens", "max_output_tokens must be a whole number of at least 1")
        })?;
        options.insert("num_predict".into(), json!(tokens));
    }
    question.options = options;
    question.format = format(body)?;
    question.tools = tools(body)?;
    // The Responses API names a function at the top level of its choice;
    // chat's rule applies to the chat shape.
    let choice = match body.get("tool_choice") {
        Some(Value::Object(choice)) if choice.get("type") == Some(&json!("function")) => {
            json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or(Value::Null)}})
        }
        other => other.cloned().unwrap_or(Value::Null),
    };
    apply_tool_choice(&Map::from_iter([("tool_choice".to_string(), choice)]), &mut question)?;
    let effort = body.get("reasoning").and_then(|reasoning| reasoning.get("effort"));
    question.think = effort_as_think(effort, "reasoning.effort")?;
    let last_user = question.messages.iter().rev().find(|message| message.role == "user");
    let prompt = last_user.map(|message| message.content.clone()).unwrap_or_default();
    Ok((question, prompt))
}

/// `input` in the neutral form; consecutive function calls are one
/// assistant turn, and each output is named after the call it answers.
fn input(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let items = match body.get("input") {
        Some(Value::String(text)) if !text.is_empty() => {
            return Ok(vec![Message { role: "user".into(), content: text.clone(), ..Message::default() }]);
        }
        Some(Value::Array(items)) => items,
        _ => return Err(ApiError::invalid("input", "input must be a non-empty string or list of items")),
    };
    let mut call_names: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<Message> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = |name: &str| format!("input[{index}].{name}");
        let text = |name: &str| item.get(name).and_then(Value::as_str).unwrap_or_default();
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => out.push(message(item, &at)?),
            Some("function_call") => {
                call_names.insert(text("call_id").to_string(), text("name").to_string());
                let arguments = serde_json::from_str::<Value>(text("arguments")).unwrap_or(json!({}));
                let call = json!({"function": {"name": text("name"), "arguments": arguments}});
                match out.last_mut() {
                    Some(last) if last.role == "assistant" && last.tool_calls.is_some() => {
                        if let Some(Value::Array(calls)) = &mut last.tool_calls {
                            calls.push(call);
                        }
                    }
                    _ => out.push(Message {
                        role: "assistant".into(),
                        tool_calls: Some(json!([call])),
                        ..Message::default()
                    }),
                }
            }
            Some("function_call_output") => {
                let name = call_names.get(text("call_id")).cloned().ok_or_else(|| {
                    ApiError::invalid(&at("call_id"), "answers no function_call earlier in input")
                })?;
                let content = match item.get("output") {
                    Some(Value::String(output)) => output.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                out.push(Message {
                    role: "tool".into(),
                    content,
                    tool_name: Some(name),
                    ..Message::default()
                });
            }
            Some("reasoning") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    &at("type"),
                    format!("input items of type '{other}' are not supported"),
                ));
            }
        }
    }
    Ok(out)
}

/// One message item.
fn message(item: &Value, at: &dyn Fn(&str) -> String) -> Result<Message, ApiError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("developer") => "system",
        Some(role @ ("user" | "assistant" | "system")) => role,
        _ => return Err(ApiError::invalid(&at("role"), "role must be user, assistant, system or developer")),
    };
    let mut message = Message { role: role.into(), ..Message::default() };
    match item.get("content") {
        Some(Value::String(text)) => message.content = text.clone(),
        Some(Value::Array(parts)) => {
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text") => {
                        message
                            .content
                            .push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("input_image") => {
                        let url = part.get("image_url").and_then(Value::as_str).unwrap_or_default();
                        let data = url.split_once(";base64,").map(|(_, data)| data).ok_or_else(|| {
                            ApiError::invalid(
                                &at("content"),
                                "images must be data: URLs (base64); this service fetches nothing",
                            )
                        })?;
                        message.images.push(data.to_string());
                    }
                    _ => {
                        return Err(ApiError::invalid(
                            &at("content"),
                            "content parts must be input_text, output_text or input_image",
                        ));
                    }
                }
            }
        }
        _ => return Err(ApiError::invalid(&at("content"), "content must be a string or a list of parts")),
    }
    Ok(message)
}

/// `text.format` as Ollama's `format`.
fn format(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let format = body.get("text").and_then(|text| text.get("format"));
    match format.and_then(|format| format.get("type")).and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!("json"))),
        Some("json_schema") => format
            .and_then(|format| format.get("schema"))
            .cloned()
            .map(Some)
            .ok_or_else(|| ApiError::invalid("text.format.schema", "json_schema needs a schema")),
        Some(other) => Err(ApiError::invalid("text.format.type", format!("unknown text format '{other}'"))),
    }
}

/// `tools` (functions only) in the chat shape.
fn tools(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list")),
    };
    let functions = tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or_default();
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            if kind != "function" || name.is_empty() {
                return Err(ApiError::invalid(
                    &format!("tools[{index}]"),
                    format!("tools must be named functions; '{kind}' tools are not supported"),
                ));
            }
            Ok(function_tool(name, tool.get("description"), tool.get("parameters")))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok((!functions.is_empty()).then_some(Value::Array(functions)))
}
