//! What the pipeline needs of the host, as traits: the cache protocol
//! (lookup, then lead or follow a flight) and the model backend. The
//! component implements them over the WIT imports ([`crate::wasm_host`]);
//! the pipeline's unit tests implement them natively with a fake.

use crate::backend::{Generation, StreamEvent};
use crate::error::ApiError;

/// A value the cache holds, and how old it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub value: Vec<u8>,
    pub age_s: u64,
}

/// Where an answer comes from.
pub enum Found<L, F> {
    /// A fresh value.
    Fresh(Cached),
    /// Nobody computes it: the caller does, then lands or crashes `L`.
    Lead(L),
    /// Another request does: follow `F`.
    Follow(F),
}

/// What a lookup found, plus any value within the stale window.
pub struct Lookup<L, F> {
    pub found: Found<L, F>,
    pub stale: Option<Cached>,
}

/// What a follower learns next from its leader.
#[derive(Debug, Clone, PartialEq)]
pub enum FlightEvent {
    /// A piece of a streamed answer.
    Chunk(Vec<u8>),
    /// The leader's value.
    Landed(Vec<u8>),
    /// The leader's failure, as its client was told.
    Crashed(ApiError),
    /// The leader went away, or the deadline came.
    Abandoned,
}

/// The duty to produce a key's value. Dropped without `land` or `crash`,
/// the flight is abandoned and the followers try again.
pub trait Lead {
    /// Hands a piece of a streamed answer to every follower.
    fn publish(&self, chunk: &[u8]);
    /// Stores `value` (fresh `fresh_s` seconds, 0 = not at all, kept
    /// `stale_s` more) and hands it to every follower.
    fn land(self, value: &[u8], fresh_s: u64, stale_s: u64);
    /// Hands `error` to every follower.
    fn crash(self, error: &ApiError);
    /// Requests following the flight now.
    fn followers(&self) -> u32;
}

/// Following another request's flight.
pub trait Follow {
    /// The leader's next event (bounded by the request's deadline).
    fn next(&mut self) -> FlightEvent;
}

/// A backend answer being read: text pieces, then the end.
pub trait TextSource {
    /// The next event; errors end the answer.
    fn next(&mut self) -> Result<StreamEvent, ApiError>;
}

/// A backend request sent, its answer not yet read.
pub trait Pending {
    /// Waits for the answer's head: a failure status is an error here.
    fn open(self: Box<Self>) -> Result<Box<dyn TextSource>, ApiError>;
}

/// The host as the pipeline sees it.
pub trait Host {
    /// The lead side of a flight.
    type Lead: Lead;
    /// The follow side of a flight.
    type Follow: Follow;

    /// One cache lookup for `key`, with values expired less than `stale_s`
    /// seconds ago offered as stale.
    fn lookup(&self, key: &str, stale_s: u64) -> Lookup<Self::Lead, Self::Follow>;

    /// Sends `generation` to the backend without waiting for the answer
    /// (`stream`: as pieces, else whole).
    fn start(&self, generation: &Generation<'_>, stream: bool) -> Result<Box<dyn Pending>, ApiError>;
}
