//! One generation served in a client's framing: the seed's JSON and NDJSON,
//! Ollama's JSON and NDJSON, OpenAI's JSON and server-sent events. Every
//! dialect runs the one pipeline ([`crate::pipeline`]); a [`Framing`] only
//! says how its answers look on the wire.
//!
//! A failure before the first byte is an ordinary HTTP error in the
//! framing's shape; after it, the framing's error event ends the stream. A
//! client that leaves cancels the generation (its backend response is
//! dropped) only when no other request follows it; else it is finished for
//! them. A cached answer is replayed in the same framing: the text as one
//! piece, then the end.

use std::time::Instant;

use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Response};

use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::{Begun, Ctx, Outcome, Policy, begin};
use crate::render;
use crate::report;
use crate::request::GenerateRequest;
use crate::wasm_host::WasmHost;

/// How a dialect puts answers on the wire.
pub trait Framing: 'static {
    /// A whole answer (or its error).
    fn whole(&self, outcome: &Outcome, started: Instant) -> Response;
    /// An error before any byte of the answer (the seed's and Ollama's
    /// shape unless the dialect says otherwise).
    fn error(&self, error: &ApiError) -> Response {
        error.response()
    }
    /// The head of a streamed answer (status, content type).
    fn stream_head(&self) -> Response;
    /// One piece of a streamed answer.
    fn piece(&mut self, writer: &mut BodyWriter, piece: &str) -> Result<(), ClientGone>;
    /// A stream's end: the closing event(s), or the error event.
    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, started: Instant)
    -> Result<(), ClientGone>;
}

/// The pipeline's policy from the handler's settings.
pub fn policy(config: &Config) -> Policy {
    Policy {
        backend: config.backend.kind(),
        cache_ttl_s: config.cache_ttl_s,
        stale_if_error_s: config.stale_if_error_s,
    }
}

/// Answers `request` (validated, its model resolved) in `framing`.
pub fn answer<F: Framing>(request: GenerateRequest, framing: F, started: Instant) -> Reply {
    let config = Config::get();
    let (host, policy) = (WasmHost::new(config.backend.clone()), policy(config));
    if request.stream {
        return stream(host, request, policy, framing, started);
    }
    let ctx = Ctx { host: &host, request: &request, policy: &policy };
    let outcome = match begin(&ctx) {
        Begun::Done(outcome) => outcome,
        Begun::Flowing(flow) => flow.finish(&ctx),
    };
    let response = framing.whole(&outcome, started);
    report::generation(&request, started, response.status(), &outcome);
    response.into()
}

fn stream<F: Framing>(
    host: WasmHost,
    request: GenerateRequest,
    policy: Policy,
    mut framing: F,
    started: Instant,
) -> Reply {
    let ctx = Ctx { host: &host, request: &request, policy: &policy };
    let mut flow = match begin(&ctx) {
        Begun::Flowing(flow) => flow,
        Begun::Done(Err(error)) => {
            report::generation(&request, started, error.status(), &Err(error.clone()));
            return framing.error(&error).into();
        }
        Begun::Done(Ok(answer)) => {
            let head = render::with_cache_headers(framing.stream_head(), answer.cache_use, answer.age_s);
            let outcome: Outcome = Ok(answer);
            report::generation(&request, started, 200, &outcome);
            return Reply::Stream {
                head,
                write: Box::new(move |writer| {
                    let Ok(answer) = &outcome else { return };
                    if framing.piece(writer, &answer.stored.response).is_ok() {
                        let _ = framing.end(writer, &outcome, started);
                    }
                }),
            };
        }
    };
    let head = framing.stream_head().with_header("x-cache", flow.cache_use.header());
    Reply::Stream {
        head,
        write: Box::new(move |writer| {
            let ctx = Ctx { host: &host, request: &request, policy: &policy };
            while let Some(piece) = flow.next_chunk(&ctx) {
                if framing.piece(writer, &piece).is_err() {
                    // The client left. With others waiting, the generation
                    // is finished for them (and cached); alone, dropping the
                    // flow drops the backend response, which cancels it.
                    if flow.others_wait() {
                        let outcome = flow.finish(&ctx);
                        report::generation(&request, started, 200, &outcome);
                    }
                    return;
                }
            }
            let outcome = flow.finish(&ctx);
            report::generation(&request, started, 200, &outcome);
            let _ = framing.end(writer, &outcome, started);
        }),
    }
}
