//! Generating an answer: the backend call (whole, or a stream opened with
//! its fallbacks), its pieces handed to the client and to the flight's
//! followers, then the answer post-processed and landed, or the failure
//! crashed to the followers.

use super::calls::{complete_whole, generation, open_stream};
use super::host::{Cached, Host, Lead, Pending, TextSource};
use super::{Answer, Begun, CacheUse, Ctx, Flow, Outcome, Source, fail};
use crate::backend::{Ending, StreamEvent};
use crate::error::ApiError;
use crate::key::prompt_hash;
use crate::request::Prepared;
use crate::stored::Stored;

/// This request generates: leading a flight, or alone.
pub(super) struct Generating<H: Host> {
    pub(super) lead: Option<H::Lead>,
    stale: Option<Cached>,
    prepared: Prepared,
    backend: Backend,
    /// Text and pieces received so far (streams).
    text: String,
    pieces: u64,
    /// How the backend said the stream ended.
    ending: Ending,
    /// Whether a piece went to the client (no stale stand-in after that).
    delivered: bool,
}

/// Where the backend answer is.
enum Backend {
    /// A whole request sent (or failed to send) to the first model.
    Sent(Result<Box<dyn Pending>, ApiError>),
    /// A stream open from `models[index]`.
    Streaming { source: Box<dyn TextSource>, index: usize },
    /// A stream that ended; the model index, or the error.
    Ended(Result<usize, ApiError>),
}

/// Prepares and sends the generation; a stream is opened (with fallbacks).
pub(super) fn generate<H: Host>(
    ctx: &Ctx<'_, H>,
    lead: Option<H::Lead>,
    stale: Option<Cached>,
    cache_use: CacheUse,
) -> Begun<H> {
    let prepared = match ctx.request.prepare() {
        Ok(prepared) => prepared,
        Err(error) => return Begun::Done(fail(lead, stale, error)),
    };
    let backend = if ctx.request.stream {
        match open_stream(ctx, &prepared) {
            Ok((source, index)) => Backend::Streaming { source, index },
            Err(error) => return Begun::Done(fail(lead, stale, error)),
        }
    } else {
        Backend::Sent(ctx.host.start(&generation(ctx.request, &prepared, ctx.request.primary_model()), false))
    };
    let generating = Generating {
        lead,
        stale,
        prepared,
        backend,
        text: String::new(),
        pieces: 0,
        ending: Ending::default(),
        delivered: false,
    };
    Begun::Flowing(Flow::new(Source::Generating(Box::new(generating)), cache_use))
}

impl<H: Host> Generating<H> {
    pub(super) fn next_piece(&mut self) -> Option<String> {
        let Backend::Streaming { source, index } = &mut self.backend else { return None };
        let index = *index;
        loop {
            match source.next() {
                Ok(StreamEvent::Text(piece)) => return Some(self.deliver(piece)),
                Ok(StreamEvent::Skip) => {}
                Ok(
                    event @ (StreamEvent::Finish(_)
                    | StreamEvent::ToolCalls(_)
                    | StreamEvent::ToolCallFragments(_)
                    | StreamEvent::Thinking(_)),
                ) => {
                    self.ending.note(event);
                }
                Ok(StreamEvent::Done(ending)) => {
                    self.ending.conclude(ending);
                    let text = std::mem::take(&mut self.ending.text);
                    self.backend = Backend::Ended(Ok(index));
                    // The final line's own text is the answer's last piece.
                    return (!text.is_empty()).then(|| self.deliver(text));
                }
                Err(error) => {
                    self.backend = Backend::Ended(Err(error));
                    return None;
                }
            }
        }
    }

    /// Takes `piece` into the answer, hands it to the followers, and
    /// returns it for the client.
    fn deliver(&mut self, piece: String) -> String {
        self.pieces += 1;
        self.text.push_str(&piece);
        if let Some(lead) = &self.lead {
            lead.publish(piece.as_bytes());
        }
        self.delivered = true;
        piece
    }

    pub(super) fn finish(mut self, ctx: &Ctx<'_, H>, cache_use: CacheUse) -> Outcome {
        // A stream read to its end by the caller, or to here.
        while matches!(self.backend, Backend::Streaming { .. }) {
            self.next_piece();
        }
        let backend = std::mem::replace(&mut self.backend, Backend::Ended(Ok(0)));
        let completed = match backend {
            Backend::Sent(first) => complete_whole(ctx, &self.prepared, first),
            Backend::Ended(Ok(index)) => {
                let mut ending = std::mem::take(&mut self.ending);
                ending.tokens_generated = Some(ending.tokens_generated.unwrap_or(self.pieces));
                Ok((std::mem::take(&mut self.text), ending, index))
            }
            Backend::Ended(Err(error)) => Err(error),
            Backend::Streaming { .. } => unreachable!("read to its end above"),
        };
        let stale = if self.delivered { None } else { self.stale.take() };
        let (text, ending, index) = match completed {
            Ok(completed) => completed,
            Err(error) => return fail(self.lead, stale, error),
        };
        let request = ctx.request;
        let response = match request.post_process(&self.prepared, text) {
            Ok(response) => response,
            Err(error) => return fail(self.lead, stale, error),
        };
        let stored = Stored {
            response,
            model: request.models[index].clone(),
            tokens_generated: ending.tokens_generated.unwrap_or_default(),
            prompt_tokens: ending.prompt_tokens,
            done_reason: ending.done_reason,
            tool_calls: ending.tool_calls.finish(),
            thinking: Some(ending.thinking).filter(|thinking| !thinking.is_empty()),
            durations: ending.durations,
            temperature: self.prepared.settings.temperature,
            prompt_hash: prompt_hash(&request.prompt),
        };
        if let Some(lead) = self.lead {
            // An answer from a fallback model is not what the key asks for,
            // and an empty one is not worth keeping: followers get both,
            // the cache neither.
            let keep = index == 0 && !stored.response.is_empty();
            let fresh_s = if keep { request.cache_ttl_s.unwrap_or(ctx.policy.cache_ttl_s) } else { 0 };
            lead.land(&stored.encode(), fresh_s, ctx.policy.stale_if_error_s);
        }
        Ok(Answer { stored, cache_use, age_s: 0 })
    }
}
