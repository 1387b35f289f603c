//! The one generation pipeline: every generation, whole, streamed or a
//! batch item, goes request → plugin → key → lookup (fresh, lead or follow)
//! → backend (one fallback loop) → post-process → land, and ends in one
//! [`Outcome`] that the caller reports and renders.
//!
//! [`begin`] does what must happen before a response head can be chosen: a
//! hit or a failure is [`Begun::Done`]; otherwise the answer is
//! [`Begun::Flowing`]. A streamed request has its backend stream open (or
//! its leader's first chunk in hand) by then; a whole one has only sent its
//! backend request, so a batch can start all its items before waiting on
//! any. [`Flow::next_chunk`] hands out the pieces of a streamed answer (a
//! leader publishes each to its followers); [`Flow::finish`] waits for the
//! end, post-processes, lands the answer for the cache and the followers,
//! or crashes the flight with the failure.
//!
//! Policy, in one place each:
//! - Stale-if-error: a failure that [`ApiError::allows_stale`] is answered
//!   with a value expired within STALE_IF_ERROR, for a leader and its
//!   followers alike (a follower judges the failure its leader crashed
//!   with), as long as no chunk of the answer went out.
//! - Fallbacks: the request's models in order, on the failures
//!   [`calls::worth_a_fallback`]; an answer from a fallback is handed to followers
//!   but never stored under the request's key.
//! - A follower whose leader went away tries again (up to [`MAX_JOINS`]
//!   lookups), then generates without a flight. A stream that had already
//!   sent pieces continues after them ([`resume`]).

mod calls;
pub mod host;
mod resume;
#[cfg(test)]
mod tests;

use self::calls::{complete_whole, generation, open_stream};
use self::host::{Cached, FlightEvent, Follow, Found, Host, Lead, Lookup, Pending, TextSource};
use self::resume::Resume;
use crate::backend::{Ending, Kind, StreamEvent};
use crate::error::ApiError;
use crate::key::{key, prompt_hash};
use crate::request::{GenerateRequest, Prepared};
use crate::stored::Stored;

/// Lookups tried before generating without single-flight (each further one
/// means a leader went away).
pub const MAX_JOINS: usize = 3;

/// How the cache took part in an answer (the `X-Cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    Bypass,
    Stale,
}

impl CacheUse {
    /// The `X-Cache` value.
    pub fn header(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
            Self::Stale => "STALE",
        }
    }

    /// Whether the answer came from the cache.
    pub fn served_from_cache(self) -> bool {
        matches!(self, Self::Hit | Self::Stale)
    }
}

/// An answer and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub stored: Stored,
    pub cache_use: CacheUse,
    /// Seconds since it was stored (0 for a new answer).
    pub age_s: u64,
}

/// How a generation ended.
pub type Outcome = Result<Answer, ApiError>;

/// The operator's cache policy, as the pipeline applies it.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The backend's protocol (part of the key).
    pub backend: Kind,
    /// LLM_RESPONSE_CACHE_TTL.
    pub cache_ttl_s: u64,
    /// STALE_IF_ERROR.
    pub stale_if_error_s: u64,
}

/// What one generation runs with.
pub struct Ctx<'a, H> {
    pub host: &'a H,
    pub request: &'a GenerateRequest,
    pub policy: &'a Policy,
}

/// What [`begin`] decided.
pub enum Begun<H: Host> {
    /// Answered (a hit, a stale stand-in) or failed, before any byte.
    Done(Outcome),
    /// An answer on its way.
    Flowing(Flow<H>),
}

/// An answer on its way.
pub struct Flow<H: Host> {
    source: Source<H>,
    /// Miss or Bypass: what `X-Cache` says while it flows.
    pub cache_use: CacheUse,
    /// What went out, should the answer have to be taken up again.
    resume: Resume,
}

enum Source<H: Host> {
    // Boxed: a generation carries its text and backend state, a follower little.
    Generating(Box<Generating<H>>),
    Following(Following<H>),
    /// Taken up again and found at once: a hit (its whole text is the one
    /// piece), or a failure.
    Settled {
        piece: Option<String>,
        outcome: Outcome,
    },
}

/// This request generates: leading a flight, or alone.
struct Generating<H: Host> {
    lead: Option<H::Lead>,
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

/// Another request generates; this one follows.
struct Following<H: Host> {
    follow: H::Follow,
    stale: Option<Cached>,
    /// The first piece, read to decide a stream's head.
    buffered: Option<Vec<u8>>,
    /// The leader's end, once read.
    end: Option<FlightEvent>,
    delivered: bool,
    joins_left: usize,
}

/// Starts the generation in `ctx`.
pub fn begin<H: Host>(ctx: &Ctx<'_, H>) -> Begun<H> {
    begin_with(ctx, MAX_JOINS)
}

fn begin_with<H: Host>(ctx: &Ctx<'_, H>, joins: usize) -> Begun<H> {
    if !ctx.request.use_cache {
        return generate(ctx, None, None, CacheUse::Bypass);
    }
    let key = key(ctx.request, ctx.policy.backend);
    for joins_left in (0..joins).rev() {
        let Lookup { found, stale } = ctx.host.lookup(&key, ctx.policy.stale_if_error_s);
        match found {
            Found::Fresh(cached) => match Stored::decode(&cached.value) {
                Some(stored) => {
                    let answer = Answer { stored, cache_use: CacheUse::Hit, age_s: cached.age_s };
                    return Begun::Done(Ok(answer));
                }
                // Not an answer this handler can read: generate, unshared.
                None => break,
            },
            Found::Lead(lead) => return generate(ctx, Some(lead), stale, CacheUse::Miss),
            Found::Follow(follow) => {
                let mut following =
                    Following { follow, stale, buffered: None, end: None, delivered: false, joins_left };
                if !ctx.request.stream {
                    return Begun::Flowing(Flow::new(Source::Following(following), CacheUse::Miss));
                }
                // A stream's head waits for the leader's first event.
                match following.follow.next() {
                    FlightEvent::Chunk(piece) => following.buffered = Some(piece),
                    FlightEvent::Abandoned => continue,
                    end => return Begun::Done(following.conclude(end)),
                }
                return Begun::Flowing(Flow::new(Source::Following(following), CacheUse::Miss));
            }
        }
    }
    generate(ctx, None, None, CacheUse::Miss)
}

/// Prepares and sends the generation; a stream is opened (with fallbacks).
fn generate<H: Host>(
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

impl<H: Host> Flow<H> {
    fn new(source: Source<H>, cache_use: CacheUse) -> Self {
        Self { source, cache_use, resume: Resume::default() }
    }

    /// Whether another request generates this answer.
    pub fn follows(&self) -> bool {
        matches!(self.source, Source::Following(_))
    }

    /// Whether other requests wait on this generation: if its own client
    /// leaves, it should still be finished for them.
    pub fn others_wait(&self) -> bool {
        match &self.source {
            Source::Generating(generating) => {
                generating.lead.as_ref().is_some_and(|lead| lead.followers() > 0)
            }
            Source::Following(_) | Source::Settled { .. } => false,
        }
    }

    /// The next piece of a streamed answer, or `None` at its end (at once
    /// for a whole request).
    pub fn next_chunk(&mut self, ctx: &Ctx<'_, H>) -> Option<String> {
        loop {
            let piece = match &mut self.source {
                Source::Generating(generating) => generating.next_piece(),
                Source::Following(following) => following.next_piece(),
                Source::Settled { piece, .. } => piece.take(),
            };
            match piece {
                // A piece a replacement only repeats is read past; one
                // that contradicts what went out ends the pieces.
                Some(piece) => match self.resume.take(piece) {
                    Some(new) => {
                        self.resume.sent(&new);
                        return Some(new);
                    }
                    None if self.resume.diverged() => return None,
                    None => {}
                },
                None if self.leader_went_away() => self.take_up(ctx),
                None => return None,
            }
        }
    }

    /// Whether this stream's leader went away after some of it went out.
    fn leader_went_away(&self) -> bool {
        self.resume.has_sent()
            && matches!(&self.source, Source::Following(following) if matches!(following.end, Some(FlightEvent::Abandoned)))
    }

    /// Looks up again and follows (or leads) the replacement, which must
    /// repeat what went out before anything more goes.
    fn take_up(&mut self, ctx: &Ctx<'_, H>) {
        let Source::Following(following) = &self.source else { return };
        let joins_left = following.joins_left;
        self.resume.restart();
        self.source = match begin_with(ctx, joins_left) {
            Begun::Flowing(flow) => flow.source,
            Begun::Done(outcome) => {
                let piece = outcome.as_ref().ok().map(|answer| answer.stored.response.clone());
                Source::Settled { piece, outcome }
            }
        };
    }

    /// Waits for the end: the answer (landed for the cache and the
    /// followers) or the failure (crashed to the followers).
    pub fn finish(self, ctx: &Ctx<'_, H>) -> Outcome {
        let broken = || {
            ApiError::BadGateway {
            message: "the generation this request shared stopped part-way, and its replacement did not repeat what was sent".into(),
        }
        };
        let outcome = match self.source {
            Source::Settled { outcome, .. } => outcome,
            // Leading, it still finishes for its own followers.
            Source::Generating(generating) => generating.finish(ctx, self.cache_use),
            // Following a replacement that differs: nothing to wait for.
            Source::Following(_) if self.resume.diverged() => return Err(broken()),
            Source::Following(following) => following.finish(ctx),
        };
        match outcome {
            Ok(_) if self.resume.broken() => Err(broken()),
            outcome => outcome,
        }
    }
}

impl<H: Host> Generating<H> {
    fn next_piece(&mut self) -> Option<String> {
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

    fn finish(mut self, ctx: &Ctx<'_, H>, cache_use: CacheUse) -> Outcome {
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

impl<H: Host> Following<H> {
    fn next_piece(&mut self) -> Option<String> {
        if let Some(piece) = self.buffered.take() {
            self.delivered = true;
            return Some(String::from_utf8_lossy(&piece).into_owned());
        }
        if self.end.is_some() {
            return None;
        }
        match self.follow.next() {
            FlightEvent::Chunk(piece) => {
                self.delivered = true;
                Some(String::from_utf8_lossy(&piece).into_owned())
            }
            end => {
                self.end = Some(end);
                None
            }
        }
    }

    /// Waits for the leader's end; a leader that went away before anything
    /// went out is replaced (looked up again).
    fn finish(mut self, ctx: &Ctx<'_, H>) -> Outcome {
        let end = match self.end.take() {
            Some(end) => end,
            None => loop {
                match self.follow.next() {
                    FlightEvent::Chunk(_) => {}
                    end => break end,
                }
            },
        };
        if matches!(end, FlightEvent::Abandoned) && !self.delivered {
            return match begin_with(ctx, self.joins_left) {
                Begun::Done(outcome) => outcome,
                Begun::Flowing(flow) => flow.finish(ctx),
            };
        }
        self.conclude(end)
    }

    /// The answer for the leader's `end`, by the same rules as the leader's.
    fn conclude(self, end: FlightEvent) -> Outcome {
        let stale = if self.delivered { None } else { self.stale };
        match end {
            FlightEvent::Landed(value) => match Stored::decode(&value) {
                Some(stored) => Ok(Answer { stored, cache_use: CacheUse::Miss, age_s: 0 }),
                None => Err(ApiError::BadGateway { message: "the shared generation was unreadable".into() }),
            },
            FlightEvent::Crashed(error) => stand_in(stale, error),
            FlightEvent::Abandoned | FlightEvent::Chunk(_) => Err(ApiError::BadGateway {
                message: "the generation this request shared stopped before its end".into(),
            }),
        }
    }
}

/// Crashes the flight (if leading) with `error`, then answers it.
fn fail<L: Lead>(lead: Option<L>, stale: Option<Cached>, error: ApiError) -> Outcome {
    if let Some(lead) = lead {
        lead.crash(&error);
    }
    stand_in(stale, error)
}

/// The stale value for `error` when the policy allows one, else the error.
fn stand_in(stale: Option<Cached>, error: ApiError) -> Outcome {
    match stale.and_then(|cached| Some((Stored::decode(&cached.value)?, cached.age_s))) {
        Some((stored, age_s)) if error.allows_stale() => {
            Ok(Answer { stored, cache_use: CacheUse::Stale, age_s })
        }
        _ => Err(error),
    }
}
