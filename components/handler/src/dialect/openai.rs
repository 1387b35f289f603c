//! OpenAI's `POST /v1/chat/completions`, as the OpenAI SDKs expect it:
//! a `chat.completion` object, or with `stream: true` server-sent events
//! (`chat.completion.chunk`s, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`). Errors are
//! `{"error": {"message", "type", "param", "code"}}`, with the status the
//! SDKs turn into their own error types (404 → `NotFoundError`).
//! The parameters, defaults and shapes it shares with `/v1/completions` are
//! in [`super::openai_params`].

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Request, Response};
use serde_json::{Map, Value, json};

use super::Route;
use super::openai_params::{
    Envelope, answer, apply_tool_choice, effort_as_think, error_response, finish_reason,
    read_response_format, refuse_unsupported, sampling_options, sse_head, usage, write_error_event,
    write_event,
};
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::question::{Family, Message, Question};
use crate::render::with_cache_headers;
use crate::serve::Framing;
use crate::stamp::Stamp;
use crate::stored::Stored;
use crate::tool_calls::to_openai;

/// OpenAI's API.
pub const ROUTES: &[Route] = &[
    Route::exact("/v1/chat/completions", &["POST"], chat_completions),
    Route::exact("/v1/completions", &["POST"], super::openai_completions::completions),
    Route::exact("/v1/models", &["GET"], super::openai_meta::list),
    Route::exact("/v1/embeddings", &["POST"], super::openai_meta::embeddings),
    Route::exact("/v1/responses", &["POST"], super::openai_responses::responses),
    Route::prefix(super::openai_meta::MODEL_PATH_PREFIX, &["GET"], super::openai_meta::one),
];

/// POST /v1/chat/completions.
pub fn chat_completions(request: &Request) -> Reply {
    answer(request, "chatcmpl-", question, |envelope| OpenAiFraming { envelope, role_sent: false })
}

/// The question in `body`, and the last user message (what the key's
/// prompt hash and the logs see).
fn question(body: &Map<String, Value>) -> Result<(Question, String), ApiError> {
    let mut question = Question::new(Family::Chat);
    question.messages = messages(body)?;
    if question.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    }
    question.options = sampling_options(body)?;
    read_response_format(body, &mut question)?;
    question.tools = match body.get("tools") {
        None | Some(Value::Null) => None,
        Some(Value::Array(tools)) if tools.is_empty() => None,
        Some(tools @ Value::Array(_)) => Some(tools.clone()),
        Some(_) => return Err(ApiError::invalid("tools", "tools must be a list of functions")),
    };
    apply_tool_choice(body, &mut question)?;
    question.think = effort_as_think(body.get("reasoning_effort"), "reasoning_effort")?;
    refuse_unsupported(body)?;
    let last_user = question.messages.iter().rev().find(|message| message.role == "user");
    let prompt = last_user.map(|message| message.content.clone()).unwrap_or_default();
    Ok((question, prompt))
}

/// `messages` in the neutral form: text parts joined, data-URL images as
/// base64, `developer` as `system`, tool calls with parsed arguments.
fn messages(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) = body.get("messages") else {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = |name: &str| format!("messages[{index}].{name}");
            let role = item.get("role").and_then(Value::as_str).ok_or_else(|| ApiError::invalid(&at("role"), "a message needs a role"))?;
            let role = match role {
                "developer" => "system",
                "system" | "user" | "assistant" | "tool" | "function" => role,
                other => {
                    return Err(ApiError::invalid(&at("role"), format!("'{other}' is not a role: system, developer, user, assistant or tool")));
                }
            };
            let mut message = Message { role: role.to_string(), ..Message::default() };
            match item.get("content") {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => message.content = text.clone(),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        match part.get("type").and_then(Value::as_str) {
                            Some("text") => message.content.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default()),
                            Some("image_url") => {
                                let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                                let data = url.split_once(";base64,").map(|(_, data)| data).ok_or_else(|| {
                                    ApiError::invalid(&at("content"), "images must be data: URLs (base64); this service fetches nothing")
                                })?;
                                message.images.push(data.to_string());
                            }
                            _ => return Err(ApiError::invalid(&at("content"), "content parts must be text or image_url")),
                        }
                    }
                }
                Some(_) => return Err(ApiError::invalid(&at("content"), "content must be a string or a list of parts")),
            }
            if let Some(Value::Array(calls)) = item.get("tool_calls").filter(|calls| calls.as_array().is_some_and(|calls| !calls.is_empty())) {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|call| {
                        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                        let arguments = serde_json::from_str::<Value>(arguments).unwrap_or(json!({}));
                        json!({"function": {"name": call.pointer("/function/name").cloned().unwrap_or_default(), "arguments": arguments}})
                    })
                    .collect();
                message.tool_calls = Some(Value::Array(calls));
            }
            message.tool_name = item.get("name").and_then(Value::as_str).map(str::to_string);
            message.tool_call_id = item.get("tool_call_id").and_then(Value::as_str).map(str::to_string);
            Ok(message)
        })
        .collect()
}

/// `chat.completion` objects and their chunks.
#[derive(Clone)]
struct OpenAiFraming {
    envelope: Envelope,
    role_sent: bool,
}

impl OpenAiFraming {
    fn chunk(&self, model: &str, choices: Value, stamp: &Stamp) -> Value {
        self.envelope.chunk(json!({"id": stamp.answer_id(self.envelope.id_prefix), "object": "chat.completion.chunk", "created": stamp.created(), "model": model, "system_fingerprint": null, "choices": choices}))
    }
}

/// The assistant's message: its text (null when it only calls tools), and
/// its tool calls in OpenAI's shape.
fn assistant_message(stored: &Stored) -> Value {
    let mut message = json!({"role": "assistant", "content": stored.response});
    if let Some(thinking) = &stored.thinking {
        // The field llama.cpp and vLLM use for a reasoning model's thoughts.
        message["reasoning_content"] = json!(thinking);
    }
    if let Some(calls) = &stored.tool_calls {
        if stored.response.is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = to_openai(calls);
    }
    message
}

impl Framing for OpenAiFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return error_response(error),
        };
        let body = json!({
            "id": stamp.answer_id(self.envelope.id_prefix),
            "object": "chat.completion",
            "created": stamp.created(),
            "model": answer.stored.model,
            "system_fingerprint": null,
            "choices": [{
                "index": 0,
                "message": assistant_message(&answer.stored),
                "logprobs": null,
                "finish_reason": finish_reason(&answer.stored),
            }],
            "usage": usage(outcome),
        });
        with_cache_headers(Response::json(200, &body), answer.cache_use, answer.age_s)
    }

    fn error(&self, error: &ApiError) -> Response {
        error_response(error)
    }

    fn stream_head(&self) -> Response {
        sse_head()
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, stamp: &Stamp) -> Result<(), ClientGone> {
        let delta = if self.role_sent {
            json!({"content": piece})
        } else {
            self.role_sent = true;
            json!({"role": "assistant", "content": piece})
        };
        let chunk = self.chunk(
            &self.envelope.model,
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            stamp,
        );
        write_event(writer, &chunk.to_string())
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return write_error_event(writer, error),
        };
        if let Some(calls) = &answer.stored.tool_calls {
            // Whole calls in one delta, each with its index, as servers send the first fragment.
            let calls: Vec<Value> = to_openai(calls)
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(index, call)| {
                    let mut call = call.clone();
                    call["index"] = json!(index);
                    call
                })
                .collect();
            let mut delta = json!({"tool_calls": calls});
            if !self.role_sent {
                delta["role"] = json!("assistant");
            }
            let delta = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]);
            write_event(writer, &self.chunk(&answer.stored.model, delta, stamp).to_string())?;
        }
        let reason = finish_reason(&answer.stored);
        let last = self.chunk(
            &answer.stored.model,
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": reason}]),
            stamp,
        );
        write_event(writer, &last.to_string())?;
        if self.envelope.include_usage {
            let mut usage_chunk = self.chunk(&answer.stored.model, json!([]), stamp);
            usage_chunk["usage"] = usage(outcome);
            write_event(writer, &usage_chunk.to_string())?;
        }
        write_event(writer, "[DONE]")
    }
}
