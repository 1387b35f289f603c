//! A fake Ollama: the REST API's shapes (POST /api/generate and /api/chat
//! whole and streamed, GET /api/tags, GET /api/ps, POST /api/show,
//! GET /api/version, POST /api/embed and /api/embeddings, errors as
//! `{"error": "..."}` with Ollama's status codes) on 127.0.0.1:0, with fault
//! knobs, recording what it receives.
//!
//! The "model" answers with the prompt's words (a chat: the last message's),
//! one token per word, up to `num_predict`: deterministic, so tests can
//! assert text and token counts. Embeddings are a fixed function of the text.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the next /api/generate request gets instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an `{"error"}` body.
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Never answer.
    Hang,
    /// Stream the head and the first token, then nothing more (a node
    /// that hangs mid-generation).
    StallAfterFirstChunk,
    /// Answer 200 at once with bytes that are not Ollama's answer (a
    /// broken proxy's HTML page, whole or as the stream's lines).
    Junk,
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Body parsed as JSON (`Null` if it was not).
    pub body: Value,
    /// The W3C `traceparent` header, when one came.
    pub traceparent: Option<String>,
}

#[derive(Default)]
struct State {
    offline: std::sync::atomic::AtomicBool,
    models: Mutex<Vec<String>>,
    /// What /api/ps lists (default: the first model).
    loaded: Mutex<Option<Vec<String>>>,
    latency: Mutex<Duration>,
    token_delay: Mutex<Duration>,
    reply: Mutex<Option<String>>,
    /// A tool call /api/chat answers with instead of text.
    tool_call: Mutex<Option<Value>>,
    /// What /api/chat "thinks" before its answer (a thinking model's `thinking`).
    thinking: Mutex<Option<String>>,
    /// Every model's digest in /api/tags (a re-pull changes it).
    digest: Mutex<Option<String>>,
    faults: Mutex<VecDeque<Fault>>,
    /// The fault every generation gets once the queued ones are used up.
    lasting: Mutex<Option<Fault>>,
    recorded: Mutex<Vec<Recorded>>,
    generating: AtomicUsize,
    max_generating: AtomicUsize,
    cancelled: AtomicUsize,
}

/// A running fake Ollama; stops when dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeOllama {
    /// Starts a fake serving `models`.
    pub fn start(models: &[&str]) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let state = Arc::new(State::default());
        *state.models.lock().unwrap() = models.iter().map(|model| model.to_string()).collect();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(accept_loop(listener, state.clone()));
        Self { addr, state, _runtime: runtime }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes /api/ps list `models` as loaded.
    pub fn set_loaded(&self, models: &[&str]) {
        *self.state.loaded.lock().unwrap() = Some(models.iter().map(|model| model.to_string()).collect());
    }

    /// Waits this long before answering any generation.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// Answers every generation with `reply`'s words instead of the
    /// prompt's (`None`: the prompt's again).
    pub fn set_reply(&self, reply: Option<&str>) {
        *self.state.reply.lock().unwrap() = reply.map(str::to_string);
    }

    /// Waits this long between streamed tokens (and per token when whole).
    pub fn set_token_delay(&self, delay: Duration) {
        *self.state.token_delay.lock().unwrap() = delay;
    }

    /// The next `count` generation requests get `fault`.
    pub fn fail_next(&self, count: usize, fault: Fault) {
        self.state.faults.lock().unwrap().extend(std::iter::repeat_n(fault, count));
    }

    /// Every generation gets `fault` from now on (`None`: none), after the
    /// ones [`Self::fail_next`] queued.
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.state.lasting.lock().unwrap() = fault;
    }

    /// Offline, the fake closes every new connection at once, as a stopped
    /// Ollama would refuse it, and drops kept-alive ones at their next
    /// request; back online it answers again.
    pub fn set_offline(&self, offline: bool) {
        self.state.offline.store(offline, Ordering::SeqCst);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    /// The bodies of the /api/generate requests received.
    pub fn generate_requests(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r.path == "/api/generate").map(|r| r.body).collect()
    }

    /// Makes /api/chat answer by calling the tool `name` with `arguments`
    /// (no text), as a model given tools does.
    pub fn set_tool_call(&self, name: &str, arguments: Value) {
        *self.state.tool_call.lock().unwrap() =
            Some(json!([{"function": {"name": name, "arguments": arguments}}]));
    }

    /// Makes /api/chat think `thoughts` before answering: whole, in
    /// `message.thinking`; streamed, on a line of their own first.
    pub fn set_thinking(&self, thoughts: &str) {
        *self.state.thinking.lock().unwrap() = Some(thoughts.to_string());
    }

    /// Gives every model a new digest, as a re-pull would.
    pub fn set_digest(&self, digest: &str) {
        *self.state.digest.lock().unwrap() = Some(digest.to_string());
    }

    /// The bodies of the /api/chat requests received.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r.path == "/api/chat").map(|r| r.body).collect()
    }

    /// How many /api/generate requests arrived.
    pub fn generate_hits(&self) -> usize {
        self.generate_requests().len()
    }

    /// The most generations that were ever open at once.
    pub fn max_concurrent_generations(&self) -> usize {
        self.state.max_generating.load(Ordering::SeqCst)
    }

    /// Generations open now.
    pub fn open_generations(&self) -> usize {
        self.state.generating.load(Ordering::SeqCst)
    }

    /// Streams whose client went away before the end.
    pub fn cancelled_streams(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        if state.offline.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
            let _ =
                http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

type Reply = hyper::Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

/// Closing the connection without an answer is done by failing the service.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault: drop the connection")
    }
}

impl std::error::Error for DropConnection {}

async fn handle(state: Arc<State>, request: hyper::Request<Incoming>) -> Result<Reply, DropConnection> {
    // A stopped Ollama answers nothing, on kept-alive connections too.
    if state.offline.load(Ordering::SeqCst) {
        return Err(DropConnection);
    }
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let traceparent =
        request.headers().get("traceparent").and_then(|value| value.to_str().ok()).map(str::to_string);
    let bytes = request.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    state.recorded.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
        traceparent,
    });
    let models = state.models.lock().unwrap().clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/api/version") => Ok(json_reply(200, json!({"version": "0.6.2"}))),
        ("GET", "/api/tags") => {
            let digest = state.digest.lock().unwrap().clone().unwrap_or_else(|| "fake".to_string());
            let models: Vec<Value> = models
                .iter()
                .map(|name| json!({"name": name, "model": name, "size": 4_661_224_676u64, "digest": digest}))
                .collect();
            Ok(json_reply(200, json!({ "models": models })))
        }
        ("POST", "/api/show") => {
            let name = body["model"].as_str().unwrap_or_default();
            if lists(&models, name) {
                // Ollama's shape (api/types.go ShowResponse), abridged.
                Ok(json_reply(
                    200,
                    json!({
                        "modelfile": format!("FROM {name}"),
                        "parameters": "stop \"<|eot_id|>\"",
                        "template": "{{ .Prompt }}",
                        "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                                    "parameter_size": "8.0B", "quantization_level": "Q5_K_M"},
                        "model_info": {"general.architecture": "llama", "general.parameter_count": 8_030_261_248u64},
                        "capabilities": ["completion"],
                        "modified_at": "2026-01-01T00:00:00Z",
                    }),
                ))
            } else {
                Ok(json_reply(404, json!({"error": format!("model '{name}' not found")})))
            }
        }
        ("GET", "/api/ps") => {
            // The first model is loaded, unless told otherwise.
            let loaded_names = state.loaded.lock().unwrap().clone();
            let loaded: Vec<Value> = loaded_names
                .unwrap_or_else(|| models.iter().take(1).cloned().collect())
                .iter()
                .map(|name| json!({"name": name, "model": name, "size": 5_000_000_000u64, "digest": "fake", "expires_at": "2026-01-01T00:05:00Z", "size_vram": 5_000_000_000u64}))
                .collect();
            Ok(json_reply(200, json!({ "models": loaded })))
        }
        ("POST", "/api/embed" | "/api/embeddings") => {
            let name = body["model"].as_str().unwrap_or_default();
            if !lists(&models, name) {
                return Ok(json_reply(404, json!({"error": format!("model '{name}' not found")})));
            }
            if path == "/api/embeddings" {
                return Ok(json_reply(
                    200,
                    json!({"embedding": embedding(body["prompt"].as_str().unwrap_or_default())}),
                ));
            }
            let inputs: Vec<String> = match &body["input"] {
                Value::String(text) => vec![text.clone()],
                Value::Array(items) => {
                    items.iter().filter_map(|item| item.as_str().map(str::to_string)).collect()
                }
                _ => return Ok(json_reply(400, json!({"error": "invalid input type"}))),
            };
            let vectors: Vec<Value> = inputs.iter().map(|text| embedding(text)).collect();
            Ok(json_reply(
                200,
                json!({"model": name, "embeddings": vectors, "prompt_eval_count": inputs.len()}),
            ))
        }
        ("POST", "/api/pull") => {
            let lines = [json!({"status": "pulling manifest"}), json!({"status": "success"})];
            let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
            let mut reply = json_reply(200, Value::Null);
            *reply.body_mut() = Full::new(Bytes::from(text)).boxed();
            reply.headers_mut().insert("content-type", "application/x-ndjson".parse().unwrap());
            Ok(reply)
        }
        ("POST", "/api/copy") | ("DELETE", "/api/delete") => Ok(json_reply(200, Value::Null)),
        ("POST", "/api/generate") => generate(state, body, models, false).await,
        ("POST", "/api/chat") => generate(state, body, models, true).await,
        _ => Ok(json_reply(404, json!({"error": "404 page not found"}))),
    }
}

/// A fixed 4-number vector for `text`: its length, words, vowels, and 1.
fn embedding(text: &str) -> Value {
    let vowels = text.chars().filter(|c| "aeiouAEIOU".contains(*c)).count();
    json!([text.len() as f64, text.split_whitespace().count() as f64, vowels as f64, 1.0])
}

/// /api/generate (`chat` false) or /api/chat.
async fn generate(
    state: Arc<State>,
    body: Value,
    models: Vec<String>,
    chat: bool,
) -> Result<Reply, DropConnection> {
    let open = Open::new(state.clone());
    let fault = state.faults.lock().unwrap().pop_front().or(*state.lasting.lock().unwrap());
    if fault == Some(Fault::Junk) {
        let (kind, junk) = match body["stream"].as_bool() {
            Some(false) => ("application/json", "<html><body>502 Bad Gateway</body></html>"),
            _ => ("application/x-ndjson", "<html><body>502 Bad Gateway</body></html>\n"),
        };
        let mut reply = hyper::Response::new(Full::new(Bytes::from(junk)).boxed());
        reply.headers_mut().insert("content-type", kind.parse().unwrap());
        return Ok(reply);
    }
    // A failing answer takes as long as a good one would to start.
    let latency = *state.latency.lock().unwrap();
    tokio::time::sleep(latency).await;
    match fault {
        Some(Fault::Status(status)) => {
            return Ok(json_reply(status, json!({"error": format!("fault: status {status}")})));
        }
        Some(Fault::Drop) => return Err(DropConnection),
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::StallAfterFirstChunk | Fault::Junk) | None => {}
    }
    let stall = matches!(fault, Some(Fault::StallAfterFirstChunk));
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if !lists(&models, &model) {
        return Ok(json_reply(404, json!({"error": format!("model '{model}' not found")})));
    }
    let limit = body["options"]["num_predict"].as_u64().unwrap_or(128) as usize;
    let reply = state.reply.lock().unwrap().clone();
    let asked = if chat {
        body["messages"].as_array().and_then(|messages| messages.last()).map(|last| last["content"].clone())
    } else {
        Some(body["prompt"].clone())
    };
    let text =
        reply.unwrap_or_else(|| asked.and_then(|text| text.as_str().map(str::to_string)).unwrap_or_default());
    let tool_call = if chat { state.tool_call.lock().unwrap().clone() } else { None };
    let thinking = if chat { state.thinking.lock().unwrap().clone() } else { None };
    // The field a piece of text travels in.
    let carry = move |text: &str| {
        if chat {
            json!({"message": {"role": "assistant", "content": text}})
        } else {
            json!({"response": text})
        }
    };
    let text = if tool_call.is_some() { String::new() } else { text };
    let tokens: Vec<String> = text
        .split_whitespace()
        .take(limit)
        .enumerate()
        .map(|(index, word)| if index == 0 { word.to_string() } else { format!(" {word}") })
        .collect();
    let done_reason = if tokens.len() == limit { "length" } else { "stop" };
    let token_delay = *state.token_delay.lock().unwrap();
    let mut last = json!({
        "model": model, "created_at": "2026-01-01T00:00:00Z", "done": true,
        "done_reason": done_reason, "total_duration": 5_000_000u64, "load_duration": 1_000_000u64,
        "prompt_eval_count": 8, "prompt_eval_duration": 1_000_000u64, "eval_count": tokens.len(),
        "eval_duration": 3_000_000u64,
    });
    merge(&mut last, carry(""));
    if body["stream"].as_bool() == Some(false) {
        tokio::time::sleep(token_delay * tokens.len() as u32).await;
        let mut whole = last;
        merge(&mut whole, carry(&tokens.concat()));
        if let Some(calls) = tool_call {
            whole["message"]["tool_calls"] = calls;
        }
        if let Some(thinking) = thinking {
            whole["message"]["thinking"] = json!(thinking);
        }
        return Ok(json_reply(200, whole));
    }
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let _open = open;
        if let Some(thinking) = thinking {
            let line = json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "done": false,
                              "message": {"role": "assistant", "content": "", "thinking": thinking}});
            let _ = sender.send(Bytes::from(format!("{line}\n"))).await;
        }
        if let Some(calls) = tool_call {
            // Ollama sends the calls on a line of their own, before the last.
            let line = json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "done": false,
                              "message": {"role": "assistant", "content": "", "tool_calls": calls}});
            let _ = sender.send(Bytes::from(format!("{line}\n"))).await;
        }
        for token in tokens {
            tokio::time::sleep(token_delay).await;
            let mut line = json!({"model": model, "created_at": "2026-01-01T00:00:00Z", "done": false});
            merge(&mut line, carry(&token));
            if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                state.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if stall {
                // Hold the stream open until the reader gives up.
                sender.closed().await;
                state.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        let _ = sender.send(Bytes::from(format!("{last}\n"))).await;
    });
    let mut reply = hyper::Response::new(ChannelBody(receiver).boxed());
    reply.headers_mut().insert("content-type", "application/x-ndjson".parse().unwrap());
    Ok(reply)
}

/// Copies `extra`'s fields into `value`.
fn merge(value: &mut Value, extra: Value) {
    if let (Some(value), Value::Object(extra)) = (value.as_object_mut(), extra) {
        value.extend(extra);
    }
}

/// Counts a generation as open while alive.
struct Open(Arc<State>);

impl Open {
    fn new(state: Arc<State>) -> Self {
        let now = state.generating.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_generating.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.generating.fetch_sub(1, Ordering::SeqCst);
    }
}

fn json_reply(status: u16, body: Value) -> Reply {
    let mut reply = hyper::Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *reply.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    reply.headers_mut().insert("content-type", "application/json; charset=utf-8".parse().unwrap());
    reply
}

/// A streamed body fed by a channel; ends when the sender does.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}
/// Whether `models` holds `name` as Ollama reads names: without a tag, a
/// name is its `:latest`.
fn lists(models: &[String], name: &str) -> bool {
    models.iter().any(|model| model == name || *model == format!("{name}:latest"))
}
