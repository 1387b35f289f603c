//! OpenAI's Responses shapes for the pipeline's answers
//! ([`super::openai_responses`] reads the requests):
//!
//! - a whole answer is a `response` object (`resp_…`, `status`
//!   `completed`, or `incomplete` with `max_output_tokens` when the model
//!   ran out) whose `output` holds the thoughts (a `reasoning` item with a
//!   summary), the text (a `message` item with one `output_text` part) and
//!   each call (a `function_call` item, `call_id` `call_N`), with `usage`
//!   and the request's parameters echoed as OpenAI does;
//! - a stream is the typed event sequence, each with its
//!   `sequence_number`: `response.created`, `response.in_progress`, the
//!   message's `response.output_item.added`, `response.content_part.added`,
//!   `response.output_text.delta`s, `.done`s, then each call's and the
//!   thoughts' items (a call's arguments as one
//!   `response.function_call_arguments.delta`), and `response.completed`
//!   carrying the whole response. A failure after the head is
//!   `response.failed` with the error.
//!
//! Ids and times come from the [`Stamp`], so a replay gets fresh ones.

use llm_service_sdk::http::{BodyWriter, ClientGone, Response};
use serde_json::{Map, Value, json};

use super::openai_params::{error_response, sse_head};
use crate::error::ApiError;
use crate::pipeline::Outcome;
use crate::question::Question;
use crate::render::with_cache_headers;
use crate::serve::Framing;
use crate::stamp::Stamp;
use crate::stored::Stored;
use crate::tool_calls::to_openai;

/// The request's parameters a response object repeats.
#[derive(Clone)]
pub struct Echo(Map<String, Value>);

impl Echo {
    /// What `body` asked, with the defaults the question was sent with.
    pub fn of(body: &Map<String, Value>, question: &Question) -> Self {
        let given = |name: &str, default: Value| {
            body.get(name).filter(|value| !value.is_null()).cloned().unwrap_or(default)
        };
        let mut echo = Map::new();
        echo.insert("instructions".into(), given("instructions", Value::Null));
        echo.insert("max_output_tokens".into(), given("max_output_tokens", Value::Null));
        for name in ["temperature", "top_p"] {
            echo.insert(name.into(), question.options.get(name).cloned().unwrap_or(Value::Null));
        }
        echo.insert("tools".into(), given("tools", json!([])));
        echo.insert("tool_choice".into(), given("tool_choice", json!("auto")));
        echo.insert("parallel_tool_calls".into(), given("parallel_tool_calls", json!(true)));
        echo.insert("text".into(), given("text", json!({"format": {"type": "text"}})));
        echo.insert("reasoning".into(), given("reasoning", json!({"effort": null, "summary": null})));
        echo.insert("metadata".into(), given("metadata", json!({})));
        echo.insert("store".into(), json!(false));
        echo.insert("truncation".into(), json!("disabled"));
        Self(echo)
    }
}

/// Responses and their stream events.
#[derive(Clone)]
pub struct ResponsesFraming {
    /// The model asked for, named until the answer says which answered.
    model: String,
    echo: Echo,
    /// The next event's `sequence_number`; 0 until the stream opened.
    sequence: u64,
    /// Whether the message item is open (its text streaming).
    message_open: bool,
    /// Output items begun so far (the next item's `output_index`).
    items: usize,
}

impl ResponsesFraming {
    /// The framing of an answer from `model` to a request that asked `echo`.
    pub fn new(model: &str, echo: Echo) -> Self {
        Self { model: model.to_string(), echo, sequence: 0, message_open: false, items: 0 }
    }

    /// The response object: `output` so far, and `usage` once known.
    fn response(
        &self,
        stamp: &Stamp,
        model: &str,
        status: &str,
        output: Vec<Value>,
        stored: Option<&Stored>,
    ) -> Value {
        let mut response = json!({
            "id": stamp.answer_id("resp_"), "object": "response", "created_at": stamp.created(),
            "status": status, "error": null, "incomplete_details": null, "model": model, "output": output,
            "usage": stored.map(usage),
        });
        if stored.is_some_and(|stored| stored.done_reason.as_deref() == Some("length")) {
            response["status"] = json!("incomplete");
            response["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        for (name, value) in &self.echo.0 {
            response[name] = value.clone();
        }
        response
    }

    fn event(&mut self, writer: &mut BodyWriter, kind: &str, mut data: Value) -> Result<(), ClientGone> {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        writer.write(format!("event: {kind}\ndata: {data}\n\n").as_bytes())
    }

    fn open(&mut self, writer: &mut BodyWriter, stamp: &Stamp) -> Result<(), ClientGone> {
        if self.sequence > 0 {
            return Ok(());
        }
        let response = self.response(stamp, &self.model.clone(), "in_progress", Vec::new(), None);
        self.event(writer, "response.created", json!({"response": response}))?;
        let response = self.response(stamp, &self.model.clone(), "in_progress", Vec::new(), None);
        self.event(writer, "response.in_progress", json!({"response": response}))
    }

    /// An item's `added` and `done` events around `between`.
    fn item(
        &mut self,
        writer: &mut BodyWriter,
        item: Value,
        between: Vec<(&str, Value)>,
    ) -> Result<(), ClientGone> {
        let output_index = self.items;
        self.items += 1;
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        if added.get("arguments").is_some() {
            added["arguments"] = json!("");
        }
        if added.get("content").is_some() {
            added["content"] = json!([]);
        }
        self.event(
            writer,
            "response.output_item.added",
            json!({"output_index": output_index, "item": added}),
        )?;
        for (kind, mut data) in between {
            data["item_id"] = item["id"].clone();
            data["output_index"] = json!(output_index);
            self.event(writer, kind, data)?;
        }
        self.event(writer, "response.output_item.done", json!({"output_index": output_index, "item": item}))
    }
}

/// The message item holding `text`.
fn message_item(stamp: &Stamp, text: &str) -> Value {
    json!({
        "type": "message", "id": stamp.answer_id("msg_"), "status": "completed", "role": "assistant",
        "content": [text_part(text)],
    })
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// Each call in `stored` as a `function_call` item.
fn function_calls(stored: &Stored, stamp: &Stamp) -> Vec<Value> {
    let calls = stored.tool_calls.as_ref().map(to_openai).unwrap_or(json!([]));
    calls
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, call)| {
            let id = format!("{}_{index}", stamp.answer_id("fc_").as_str().unwrap_or_default());
            json!({
                "type": "function_call", "id": id, "call_id": call["id"], "name": call["function"]["name"],
                "arguments": call["function"]["arguments"], "status": "completed",
            })
        })
        .collect()
}

fn reasoning_item(stamp: &Stamp, thinking: &str) -> Value {
    json!({"type": "reasoning", "id": stamp.answer_id("rs_"), "summary": [{"type": "summary_text", "text": thinking}], "status": "completed"})
}

fn usage(stored: &Stored) -> Value {
    let input = stored.prompt_tokens.unwrap_or(0);
    let output = stored.tokens_generated;
    json!({
        "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

/// Whether an answer has a message item: text, or nothing else to show.
fn has_message(stored: &Stored) -> bool {
    !stored.response.is_empty() || stored.tool_calls.is_none()
}

impl Framing for ResponsesFraming {
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response {
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => return error_response(error),
        };
        let stored = &answer.stored;
        let mut output: Vec<Value> =
            stored.thinking.iter().map(|thinking| reasoning_item(stamp, thinking)).collect();
        if has_message(stored) {
            output.push(message_item(stamp, &stored.response));
        }
        output.extend(function_calls(stored, stamp));
        let body = self.response(stamp, &stored.model, "completed", output, Some(stored));
        with_cache_headers(Response::json(200, &body), answer.cache_use, answer.age_s)
    }

    fn error(&self, error: &ApiError) -> Response {
        error_response(error)
    }

    fn stream_head(&self) -> Response {
        sse_head()
    }

    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, stamp: &Stamp) -> Result<(), ClientGone> {
        self.open(writer, stamp)?;
        let item_id = stamp.answer_id("msg_");
        if !self.message_open {
            self.message_open = true;
            let mut item = message_item(stamp, "");
            item["status"] = json!("in_progress");
            item["content"] = json!([]);
            self.event(
                writer,
                "response.output_item.added",
                json!({"output_index": self.items, "item": item}),
            )?;
            let part = json!({"item_id": item_id, "output_index": self.items, "content_index": 0, "part": text_part("")});
            self.event(writer, "response.content_part.added", part)?;
        }
        let delta = json!({"item_id": item_id, "output_index": self.items, "content_index": 0, "delta": piece, "logprobs": []});
        self.event(writer, "response.output_text.delta", delta)
    }

    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone> {
        self.open(writer, stamp)?;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                let mut failed = self.response(stamp, &self.model.clone(), "failed", Vec::new(), None);
                failed["error"] = json!({"code": error.kind(), "message": error.message()});
                return self.event(writer, "response.failed", json!({"response": failed}));
            }
        };
        let stored = &answer.stored;
        let mut output = Vec::new();
        if has_message(stored) {
            let item = message_item(stamp, &stored.response);
            let at = |data: Value| {
                let mut data = data;
                data["content_index"] = json!(0);
                data
            };
            let text = json!({"text": stored.response, "logprobs": []});
            let part = json!({"part": text_part(&stored.response)});
            if self.message_open {
                let output_index = self.items;
                self.items += 1;
                let closing =
                    [("response.output_text.done", at(text)), ("response.content_part.done", at(part))];
                for (kind, mut data) in closing {
                    data["item_id"] = item["id"].clone();
                    data["output_index"] = json!(output_index);
                    self.event(writer, kind, data)?;
                }
                self.event(
                    writer,
                    "response.output_item.done",
                    json!({"output_index": output_index, "item": item}),
                )?;
            } else {
                let part_added = at(json!({"part": text_part("")}));
                let delta = at(json!({"delta": stored.response, "logprobs": []}));
                let between = vec![
                    ("response.content_part.added", part_added),
                    ("response.output_text.delta", delta),
                    ("response.output_text.done", at(text)),
                    ("response.content_part.done", at(part)),
                ];
                self.item(writer, item.clone(), between)?;
            }
            output.push(item);
        }
        for call in function_calls(stored, stamp) {
            let arguments = call["arguments"].clone();
            let between = vec![
                ("response.function_call_arguments.delta", json!({"delta": arguments})),
                ("response.function_call_arguments.done", json!({"arguments": arguments})),
            ];
            self.item(writer, call.clone(), between)?;
            output.push(call);
        }
        if let Some(thinking) = &stored.thinking {
            let item = reasoning_item(stamp, thinking);
            self.item(writer, item.clone(), Vec::new())?;
            output.push(item);
        }
        let completed = self.response(stamp, &stored.model, "completed", output, Some(stored));
        let kind =
            if completed["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.event(writer, kind, json!({"response": completed}))
    }
}
