//! A streamed /generate (`"stream": true`): NDJSON, a line per chunk as the
//! backend produces it, the last line carrying the whole answer in the seed's
//! shape plus `"done": true`.
//!
//! The stream is opened (with fallbacks) before the status line goes out, so
//! a missing model or a dead backend is still a proper 404/503; after that,
//! an error ends the stream with an `{"error": ..., "done": true}` line. A
//! client that leaves drops the backend response, which closes the backend
//! connection and so cancels the generation. A stream that ends cleanly is
//! stored; a cached answer is replayed as the same NDJSON. With a plugin
//! that post-processes, the chunks are the model's own and the last line
//! (and what is stored) carries the post-processed text.

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Response};
use llm_service_sdk::outbound;
use serde_json::{Value, json};

use crate::backend::{Backend, Completion, StreamEvent};
use crate::error::ApiError;
use crate::generate::{
    CacheUse, GenerateRequest, answer_body, finished, report, with_cache_headers, worth_a_fallback,
};
use crate::response_cache::{self, Lookup, Stored};

/// Answers `request` as NDJSON.
pub fn respond(backend: Backend, request: GenerateRequest, started: Instant) -> Reply {
    let primary = request.models().remove(0);
    let key = request.use_cache.then(|| response_cache::key(&request, &primary, backend.kind()));
    let mut stale = None;
    if let Some(key) = &key {
        match response_cache::lookup(key) {
            Lookup::Fresh(stored) => {
                report(&request, started, 200, Some(&stored), CacheUse::Hit, None);
                return replay(stored, started, CacheUse::Hit);
            }
            Lookup::Stale(stored) => stale = Some(stored),
            Lookup::Miss => {}
        }
    }
    let (response, model) = match open(&backend, &request) {
        Ok(opened) => opened,
        Err(error) => {
            return match stale {
                Some(stale) if error.allows_stale() => {
                    report(&request, started, 200, Some(&stale), CacheUse::Stale, None);
                    replay(stale, started, CacheUse::Stale)
                }
                _ => {
                    report(&request, started, error.status(), None, CacheUse::Miss, Some(error.kind()));
                    error.response().into()
                }
            };
        }
    };
    let cache_use = if key.is_some() { CacheUse::Miss } else { CacheUse::Bypass };
    let head =
        Response::new(200, "application/x-ndjson", Vec::new()).with_header("x-cache", cache_use.header());
    let store_under = key.filter(|_| model == primary);
    Reply::Stream {
        head,
        write: Box::new(move |writer| {
            relay(writer, &backend, response, &request, &model, store_under, started)
        }),
    }
}

/// Opens the stream from the first model that answers.
fn open(backend: &Backend, request: &GenerateRequest) -> Result<(outbound::Response, String), ApiError> {
    let mut first_error = None;
    for model in request.models() {
        let generation = request.generation(&model);
        match backend.start(&generation, true).and_then(|pending| backend.open_stream(&generation, pending)) {
            Ok(response) => return Ok((response, model)),
            Err(error) => {
                let fall_back = worth_a_fallback(&error);
                first_error.get_or_insert(error);
                if !fall_back {
                    break;
                }
            }
        }
    }
    Err(first_error.expect("at least one model was tried"))
}

/// Copies the backend's stream to the client line by line; stores the
/// answer under `store_under` when it ends cleanly.
fn relay(
    writer: &mut BodyWriter,
    backend: &Backend,
    mut response: outbound::Response,
    request: &GenerateRequest,
    model: &str,
    store_under: Option<String>,
    started: Instant,
) {
    let mut text = String::new();
    let mut chunks = 0u64;
    loop {
        let event = match response.next_line() {
            Ok(Some(line)) => backend.stream_event(&line),
            Ok(None) => Err(ApiError::BadGateway { message: "the stream ended before it was done".into() }),
            Err(error) => Err(crate::backend::map_outbound(error)),
        };
        match event {
            Ok(StreamEvent::Skip) => {}
            Ok(StreamEvent::Text(piece)) => {
                chunks += 1;
                text.push_str(&piece);
                if write_line(writer, &json!({"response": piece, "done": false})).is_err() {
                    return;
                }
            }
            Ok(StreamEvent::Done { tokens_generated }) => {
                let completion = Completion {
                    text: std::mem::take(&mut text),
                    model: model.to_string(),
                    tokens_generated: tokens_generated.unwrap_or(chunks),
                };
                let stored = match finished(request, completion, model) {
                    Ok(stored) => stored,
                    Err(error) => {
                        end_with_error(writer, request, started, &error);
                        return;
                    }
                };
                let cache_use = match &store_under {
                    Some(key) => {
                        response_cache::store(key, &stored);
                        CacheUse::Miss
                    }
                    None if request.use_cache => CacheUse::Miss,
                    None => CacheUse::Bypass,
                };
                report(request, started, 200, Some(&stored), cache_use, None);
                let _ = write_line(writer, &last_line(&stored, started, cache_use));
                return;
            }
            Err(error) => {
                end_with_error(writer, request, started, &error);
                return;
            }
        }
    }
}

/// Ends a stream whose status line said 200 with an error line; the
/// reported kind says what went wrong.
fn end_with_error(writer: &mut BodyWriter, request: &GenerateRequest, started: Instant, error: &ApiError) {
    report(request, started, 200, None, CacheUse::Miss, Some(error.kind()));
    let mut last = error.body();
    last.insert("done".into(), json!(true));
    let _ = write_line(writer, &Value::Object(last));
}

/// A cached answer as the same NDJSON a live one gives.
fn replay(stored: Stored, started: Instant, cache_use: CacheUse) -> Reply {
    let head = with_cache_headers(Response::new(200, "application/x-ndjson", Vec::new()), &stored, cache_use);
    Reply::Stream {
        head,
        write: Box::new(move |writer| {
            if write_line(writer, &json!({"response": stored.response, "done": false})).is_ok() {
                let _ = write_line(writer, &last_line(&stored, started, cache_use));
            }
        }),
    }
}

fn last_line(stored: &Stored, started: Instant, cache_use: CacheUse) -> Value {
    let mut last = answer_body(stored, started, cache_use);
    last.insert("done".into(), json!(true));
    Value::Object(last)
}

fn write_line(writer: &mut BodyWriter, value: &Value) -> Result<(), ClientGone> {
    let mut line = value.to_string();
    line.push('\n');
    writer.write(line.as_bytes())
}
