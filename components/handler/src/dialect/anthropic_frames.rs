//! Anthropic's shapes for the pipeline's answers ([`super::anthropic`]
//! reads the requests):
//!
//! - a whole answer is a `message` (`msg_…`) whose content blocks are the
//!   thoughts (`thinking`), the text and the calls (`tool_use`, `toolu_…`),
//!   with `stop_reason` `end_turn`, `max_tokens` or `tool_use` and `usage`;
//! - a stream is Anthropic's event sequence: `message_start`, `ping`, a
//!   text block's `content_block_start`, `text_delta`s and
//!   `content_block_stop`, then the thoughts (`thinking_delta`) and each
//!   call (its input as one `input_json_delta`) as blocks of their own,
//!   `message_delta` with the stop reason and usage, `message_stop`. The
//!   backend protocols hand thoughts over with the end, so in a stream they
//!   follow the text;
//! - an error is `{"type": "error", "error": {"type", "message"}}` with the
//!   status the SDKs map to their own error types (400
//!   `BadRequestError`, 404 `NotFoundError`, 529 `OverloadedError`); in a
//!   stream, an `error` event.
//!
//! Ids and times come from the [`Stamp`], so a replay gets fresh ones.

use llm_service_sdk::http::{BodyWriter, ClientGone, Response};
use serde_json::{Value, json};

use super::openai_params::sse_head;
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::render::with_cache_headers;
use crate::serve::Framing;
use crate::stamp::Stamp;
use crate::stored::Stored;

/// Anthropic's status for an overloaded service (its SDKs' `OverloadedError`).
const OVERLOADED_STATUS: u16 = 529;

/// Messages and their stream events.
#[derive(Clone)]
pub struct MessagesFraming {
    /// The model asked for, named in `message_start`.
    model: String,
    /// Whether `message_start` went out.
    started: bool,
    /// Whether a text block is open.
    text_open: bool,
    /// Content blocks begun so far (the next block's index).
    blocks: usize,
}

impl MessagesFraming {
    /// The framing of an answer from `model`.
    pub fn new(model: &str) -> Self {
        Self { model: model.to_string(), started: false, text_open: false, blocks: 0 }
    }

    fn start(&mut self, writer: &mut BodyWriter, stamp: &Stamp) -> Result<(), ClientGone> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let message = json!({
            "id": stamp.answer_id("msg_"), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        });
        write_event(writer, "message_start", &json!({"type": "message_start", "message": message}))?;
        write_event(writer, "ping", &json!({"type": "ping"}))
    }

    /// One whole block in a stream: its start, its deltas, its stop.
    fn block(&mut self, writer: &mut BodyWriter, start: Value, deltas: &[Value]) -> Result<(), ClientGone> {
        let index = self.blocks;
        self.blocks += 1;
        write_event(
            writer,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        )?;
        for delta in deltas {
            write_event(
                writer,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index, "delta": delta}),
            )?;
        }
        write_event(writer, "content_block_stop", &json!({"type": "content_block_stop", "index": index}))
    }
}

/// A call's id: the answer's id and the call's place, so a replay's ids
/// are fresh too.
fn tool_use_id(stamp: &Stamp, index: usize) -> String {
    format!("{}_{index}", stamp.answer_id("toolu_").as_str().unwrap_or_default())
}

/// The calls in `stored` as `tool_use` blocks.
fn tool_uses(stored: &Stored, stamp: &Stamp) -> Vec<Value> {
    let calls = stored.tool_calls.as_ref().and_then(Value::as_array).into_iter().flatten();
    calls
        .enumerate()
        .map(|(index, call)| {
            let input = match call.pointer("/function/arguments") {
                Some(arguments @ Value::Object(_)) => arguments.clone(),
                _ => json!({}),
            };
            let name = call.pointer("/function/name").cloned().unwrap_or_default();
            json!({"type": "tool_use", "id": tool_use_id(stamp, index), "name": name, "input": input})
        })
        .collect()
}

/// Anthropic's `stop_reason` for an answer.
fn stop_reason(stored: &Stored) -> &'static str {
    if stored.tool_calls.is_some() {
        return "tool_use";
    }
    match stored.done_reason.as_deref() {
        Some("length") => "max_tokens",
        _ => "end_turn",
    }
}

fn usage(stored: &Stored) -> Value {
    json!({"input_tokens": stored.prompt_tokens.unwrap_or(0), "output_tokens": stored.tokens_generated})
}

impl Framing for MessagesFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return error_response(error),
        };
        let stored = &answer.stored;
        let mut content = Vec::new();
        if let Some(thinking) = &stored.thinking {
            content.push(json!({"type": "thinking", "thinking": thinking, "signature": ""}));
        }
        if !stored.response.is_empty() || stored.tool_calls.is_none() {
            content.push(json!({"type": "text", "text": stored.response}));
        }
        content.extend(tool_uses(stored, stamp));
        let body = json!({
            "id": stamp.answer_id("msg_"), "type": "message", "role": "assistant", "model": stored.model,
            "content": content, "stop_reason": stop_reason(stored), "stop_sequence": null, "usage": usage(stored),
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
        self.start(writer, stamp)?;
        if !self.text_open {
            self.text_open = true;
            let start = json!({"type": "content_block_start", "index": self.blocks, "content_block": {"type": "text", "text": ""}});
            write_event(writer, "content_block_start", &start)?;
        }
        let delta = json!({"type": "content_block_delta", "index": self.blocks, "delta": {"type": "text_delta", "text": piece}});
        write_event(writer, "content_block_delta", &delta)
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return write_event(writer, "error", &error_body(error)),
        };
        let stored = &answer.stored;
        self.start(writer, stamp)?;
        if self.text_open {
            self.text_open = false;
            write_event(
                writer,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": self.blocks}),
            )?;
            self.blocks += 1;
        } else if stored.tool_calls.is_none() {
            self.block(writer, json!({"type": "text", "text": ""}), &[])?;
        }
        if let Some(thinking) = &stored.thinking {
            let delta = json!({"type": "thinking_delta", "thinking": thinking});
            self.block(writer, json!({"type": "thinking", "thinking": "", "signature": ""}), &[delta])?;
        }
        for mut call in tool_uses(stored, stamp) {
            let input = call["input"].take().to_string();
            call["input"] = json!({});
            self.block(writer, call, &[json!({"type": "input_json_delta", "partial_json": input})])?;
        }
        let delta = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(stored), "stop_sequence": null},
            "usage": usage(stored),
        });
        write_event(writer, "message_delta", &delta)?;
        write_event(writer, "message_stop", &json!({"type": "message_stop"}))
    }
}

/// Anthropic's status for `error`: its own, but 529 for an overloaded
/// backend queue.
fn status(error: &ApiError) -> u16 {
    match error {
        ApiError::Busy => OVERLOADED_STATUS,
        _ => error.status(),
    }
}

/// Anthropic's error type for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        400 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | OVERLOADED_STATUS => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

fn error_body(error: &ApiError) -> Value {
    json!({"type": "error", "error": {"type": error_type(status(error)), "message": error.message()}})
}

/// An error in Anthropic's shape.
pub fn error_response(error: &ApiError) -> Response {
    let mut response = Response::json(status(error), &error_body(error));
    if let Some(seconds) = error.parts().retry_after_s {
        response = response.with_header("retry-after", &seconds.to_string());
    }
    response
}

/// One server-sent event with its name.
fn write_event(writer: &mut BodyWriter, name: &str, data: &Value) -> Result<(), ClientGone> {
    writer.write(format!("event: {name}\ndata: {data}\n\n").as_bytes())
}
