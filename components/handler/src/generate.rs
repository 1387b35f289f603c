//! POST /generate: the seed's request, answered whole as JSON or, with
//! `"stream": true`, as NDJSON: a line per piece as the model produces it,
//! the last carrying the whole answer (post-processed, if the character's
//! plugin does that) and `"done": true`.
//!
//! A failure before the first piece is an ordinary HTTP error; after it,
//! the stream ends with an `{"error": ..., "done": true}` line. A client
//! that leaves drops the backend response, which cancels the generation
//! (its followers then try again). A cached answer is replayed as the
//! same NDJSON.

use std::time::Instant;

use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::Value;

use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::{Begun, Ctx, Outcome, Policy, begin};
use crate::render;
use crate::report;
use crate::request::GenerateRequest;
use crate::wasm_host::WasmHost;

/// The pipeline's policy from the handler's settings.
pub fn policy(config: &Config) -> Policy {
    Policy {
        backend: config.backend.kind(),
        cache_ttl_s: config.cache_ttl_s,
        stale_if_error_s: config.stale_if_error_s,
    }
}

/// One request object, validated, its model resolved and its plugin pinned.
pub fn parse_item(value: &Value, prefix: &str, config: &Config) -> Result<GenerateRequest, ApiError> {
    let mut request = GenerateRequest::from_value(value, prefix, config, &runtime::current_model)?;
    crate::plugin::pin(&mut request);
    Ok(request)
}

/// POST /generate.
pub fn post(request: &Request) -> Reply {
    let started = Instant::now();
    let config = Config::get();
    let parsed = serde_json::from_slice::<Value>(request.body())
        .map_err(ApiError::from)
        .and_then(|value| parse_item(&value, "", config));
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            report::rejected(&error, started);
            return error.response().into();
        }
    };
    let (host, policy) = (WasmHost::new(config.backend.clone()), policy(config));
    if parsed.stream {
        return stream(host, parsed, policy, started);
    }
    let ctx = Ctx { host: &host, request: &parsed, policy: &policy };
    let outcome = match begin(&ctx) {
        Begun::Done(outcome) => outcome,
        Begun::Flowing(flow) => flow.finish(&ctx),
    };
    let response = render::whole(&outcome, started);
    report::generation(&parsed, started, response.status(), &outcome);
    response.into()
}

/// A streamed answer.
fn stream(host: WasmHost, request: GenerateRequest, policy: Policy, started: Instant) -> Reply {
    let ctx = Ctx { host: &host, request: &request, policy: &policy };
    let mut flow = match begin(&ctx) {
        Begun::Flowing(flow) => flow,
        Begun::Done(Err(error)) => {
            report::generation(&request, started, error.status(), &Err(error.clone()));
            return error.response().into();
        }
        Begun::Done(Ok(answer)) => {
            let head = render::with_cache_headers(ndjson_head(), answer.cache_use, answer.age_s);
            let outcome: Outcome = Ok(answer);
            report::generation(&request, started, 200, &outcome);
            return Reply::Stream {
                head,
                write: Box::new(move |writer| {
                    let Ok(answer) = &outcome else { return };
                    if render::piece_line(writer, &answer.stored.response).is_ok() {
                        let _ = render::last_line(writer, &outcome, started);
                    }
                }),
            };
        }
    };
    let head = ndjson_head().with_header("x-cache", flow.cache_use.header());
    Reply::Stream {
        head,
        write: Box::new(move |writer| {
            while let Some(piece) = flow.next_chunk() {
                if render::piece_line(writer, &piece).is_err() {
                    // The client left: dropping the flow abandons the flight
                    // and the backend response, which cancels the generation.
                    return;
                }
            }
            let ctx = Ctx { host: &host, request: &request, policy: &policy };
            let outcome = flow.finish(&ctx);
            report::generation(&request, started, 200, &outcome);
            let _ = render::last_line(writer, &outcome, started);
        }),
    }
}

fn ndjson_head() -> Response {
    Response::new(200, "application/x-ndjson", Vec::new())
}
