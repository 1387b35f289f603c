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
//! piece, then the end; and offered to the host's edge tier ([`crate::replay`]).

use llm_service_sdk::bindings::llm_service::host::edge::Vary;
use llm_service_sdk::http::{BodyWriter, ClientGone, Reply, Response};

use crate::config::Config;
use crate::error::ApiError;
use crate::pipeline::{Begun, Ctx, Outcome, Policy, begin};
use crate::render;
use crate::replay::Offer;
use crate::report;
use crate::request::GenerateRequest;
use crate::stamp::Stamp;
use crate::wasm_host::WasmHost;

/// How a dialect puts answers on the wire. Every value that differs
/// between two responses of one answer (times, ids) comes from the
/// [`Stamp`], so the same framing renders a replay's template. Cloned to
/// render a template beside the live answer.
pub trait Framing: Clone + 'static {
    /// A whole answer (or its error).
    fn whole(&self, outcome: &Outcome, stamp: &Stamp) -> Response;
    /// An error before any byte of the answer (the seed's and Ollama's
    /// shape unless the dialect says otherwise).
    fn error(&self, error: &ApiError) -> Response {
        error.response()
    }
    /// The head of a streamed answer (status, content type).
    fn stream_head(&self) -> Response;
    /// One piece of a streamed answer.
    fn piece(&mut self, writer: &mut BodyWriter, piece: &str, stamp: &Stamp) -> Result<(), ClientGone>;
    /// A stream's end: the closing event(s), or the error event.
    fn end(&mut self, writer: &mut BodyWriter, outcome: &Outcome, stamp: &Stamp) -> Result<(), ClientGone>;
}

/// The pipeline's policy from the handler's settings.
pub fn policy(config: &Config) -> Policy {
    Policy {
        backend: config.backend.kind(),
        cache_ttl_s: config.cache_ttl_s,
        stale_if_error_s: config.stale_if_error_s,
    }
}

/// Answers `request` (validated, its model resolved) in `framing`; `vary`
/// is what the request's headers said that its answer depends on.
pub fn answer<F: Framing>(request: GenerateRequest, framing: F, stamp: Stamp, vary: Vec<Vary>) -> Reply {
    let config = Config::get();
    let (host, policy) = (WasmHost::new(config.backend.clone()), policy(config));
    if request.stream {
        return stream(host, request, policy, framing, stamp, vary);
    }
    let ctx = Ctx { host: &host, request: &request, policy: &policy };
    let outcome = match begin(&ctx) {
        Begun::Done(outcome) => outcome,
        Begun::Flowing(flow) => flow.finish(&ctx),
    };
    let response = framing.whole(&outcome, &stamp);
    report::generation(&request, stamp.started(), response.status(), &outcome);
    if let Some(offer) = Offer::of(&request, &policy, &outcome, vary) {
        offer.whole(|template| framing.whole(&outcome, template));
    }
    response.into()
}

/// A hit's stream: its whole text as one piece, then the end.
fn write_hit<F: Framing>(
    framing: &mut F,
    writer: &mut BodyWriter,
    outcome: &Outcome,
    stamp: &Stamp,
) -> Result<(), ClientGone> {
    let Ok(answer) = outcome else { return Ok(()) };
    framing.piece(writer, &answer.stored.response, stamp)?;
    framing.end(writer, outcome, stamp)
}

fn stream<F: Framing>(
    host: WasmHost,
    request: GenerateRequest,
    policy: Policy,
    mut framing: F,
    stamp: Stamp,
    vary: Vec<Vary>,
) -> Reply {
    let started = stamp.started();
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
            if let Some(offer) = Offer::of(&request, &policy, &outcome, vary) {
                let mut recording = framing.clone();
                offer.stream(&head, |writer, template| {
                    let _ = write_hit(&mut recording, writer, &outcome, template);
                });
            }
            return Reply::Stream {
                head,
                write: Box::new(move |writer| {
                    let _ = write_hit(&mut framing, writer, &outcome, &stamp);
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
                if framing.piece(writer, &piece, &stamp).is_err() {
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
            let _ = framing.end(writer, &outcome, &stamp);
        }),
    }
}
