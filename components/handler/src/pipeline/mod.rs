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
mod generating;
pub mod host;
mod resume;
#[cfg(test)]
mod tests;

use self::generating::{Generating, generate};
use self::host::{Cached, FlightEvent, Follow, Found, Host, Lead, Lookup};
use self::resume::Resume;
use crate::backend::Kind;
use crate::error::ApiError;
use crate::key::key;
use crate::request::GenerateRequest;
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
