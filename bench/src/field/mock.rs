//! The field rows' model server: plain hyper on tokio answering Ollama's
//! (`/api/chat`, `/api/generate`, the listings the service probes) and
//! OpenAI's (`/v1/chat/completions`, `/v1/models`) chat at once, the way
//! GetBusbar/benchmarking's mock does: a whole answer at once, or a
//! stream of `chunks` frames, one every `gap`, each written as soon as it
//! is due. It parses only the request's `stream` flag, so it is never what
//! a row measures: the rows print its own ceiling beside theirs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, channel::Channel};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::scenarios::MODEL;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How a streamed answer is paced.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Frames of text before the last one.
    pub chunks: usize,
    /// Time between two frames (and before the first).
    pub gap: Duration,
}

impl Pace {
    /// No stream is asked for: every answer at once.
    pub const INSTANT: Self = Self { chunks: 1, gap: Duration::ZERO };
}

/// A running mock; stops with the runtime it was started on.
pub struct Mock {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Mock {
    /// Serves on 127.0.0.1, a free port, streaming at `pace`.
    pub async fn start(pace: Pace) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| answer(request, pace));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self { addr })
    }
}

fn whole(content_type: &'static str, body: String) -> hyper::Response<Body> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

fn json_answer(value: &Value) -> hyper::Response<Body> {
    whole("application/json", value.to_string())
}

/// Ollama's chat or generate answer: one piece of text, or the last line.
fn ollama_line(chat: bool, text: &str, done: bool) -> Value {
    let mut line = json!({"model": MODEL, "created_at": "2026-01-01T00:00:00Z", "done": done});
    if chat {
        line["message"] = json!({"role": "assistant", "content": text});
    } else {
        line["response"] = json!(text);
    }
    if done {
        line["done_reason"] = json!("stop");
        line["prompt_eval_count"] = json!(8);
        line["eval_count"] = json!(1);
    }
    line
}

/// OpenAI's answer, whole or one stream chunk.
fn openai_answer(text: &str, chunk: bool, last: bool) -> Value {
    let finish = if last { json!("stop") } else { Value::Null };
    let (object, choice) = if chunk {
        ("chat.completion.chunk", json!({"index": 0, "delta": {"content": text}, "finish_reason": finish}))
    } else {
        (
            "chat.completion",
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}),
        )
    };
    json!({"id": "chatcmpl-mock", "object": object, "created": 1_767_225_600, "model": MODEL,
           "choices": [choice], "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}})
}

/// `pace.chunks` frames made by `frame(index, last)`, one every `pace.gap`.
fn paced(content_type: &'static str, pace: Pace, frame: fn(usize, bool) -> String) -> hyper::Response<Body> {
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(1);
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for index in 0..=pace.chunks {
            // Due times from the start, so a late frame does not push the rest.
            let due = start + pace.gap * (index as u32 + 1);
            if index == 0 {
                first_frame_at(due).await;
            } else {
                tokio::time::sleep_until(due).await;
            }
            if sender.send_data(Bytes::from(frame(index, index == pace.chunks))).await.is_err() {
                return;
            }
        }
    });
    let mut response = hyper::Response::new(body.boxed_unsync());
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    response
}

/// Waits until `due` to the microsecond: tokio's timer fires on
/// whole-millisecond ticks, which would move the first frame (whose time
/// the streams' row compares, gateway against direct) by up to a tick.
/// Sleeps until 2 ms before (the timer may fire a tick late), then yields
/// until `due`: that spin is paid once per stream.
async fn first_frame_at(due: tokio::time::Instant) {
    tokio::time::sleep_until(due - Duration::from_millis(2)).await;
    while tokio::time::Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

fn ollama_frame(chat: bool, index: usize, last: bool) -> String {
    let text = if last { String::new() } else { format!("t{index} ") };
    format!("{}\n", ollama_line(chat, &text, last))
}

fn openai_frame(index: usize, last: bool) -> String {
    if last {
        return format!("data: {}\n\ndata: [DONE]\n\n", openai_answer("", true, true));
    }
    format!("data: {}\n\n", openai_answer(&format!("t{index} "), true, false))
}

async fn answer(request: hyper::Request<Incoming>, pace: Pace) -> Result<hyper::Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = parts.uri.path();
    // Ollama streams unless told not to; OpenAI only when told to.
    let ollama_streams = asked["stream"].as_bool() != Some(false);
    let openai_streams = asked["stream"].as_bool() == Some(true);
    let listed = json!({"name": MODEL, "model": MODEL, "size": 1_000_000u64, "digest": "mock"});
    Ok(match (parts.method.as_str(), path) {
        ("GET", "/api/version") => json_answer(&json!({"version": "0.6.2"})),
        ("GET", "/api/tags") => json_answer(&json!({"models": [listed]})),
        ("GET", "/api/ps") => json_answer(&json!({"models": []})),
        ("POST", "/api/show") => {
            json_answer(&json!({"details": {"family": "llama"}, "capabilities": ["completion"]}))
        }
        ("GET", "/v1/models") => json_answer(
            &json!({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "mock"}]}),
        ),
        ("POST", "/api/chat") if ollama_streams => {
            paced("application/x-ndjson", pace, |index, last| ollama_frame(true, index, last))
        }
        ("POST", "/api/generate") if ollama_streams => {
            paced("application/x-ndjson", pace, |index, last| ollama_frame(false, index, last))
        }
        ("POST", "/api/chat") => json_answer(&ollama_line(true, "mock answer", true)),
        ("POST", "/api/generate") => json_answer(&ollama_line(false, "mock answer", true)),
        ("POST", "/v1/chat/completions") if openai_streams => paced("text/event-stream", pace, openai_frame),
        ("POST", "/v1/chat/completions") => json_answer(&openai_answer("mock answer", false, true)),
        _ => {
            let mut missing = json_answer(&json!({"error": "not found"}));
            *missing.status_mut() = http::StatusCode::NOT_FOUND;
            missing
        }
    })
}
