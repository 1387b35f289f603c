//! Offers the host's edge tier (`llm-service:host/edge`) a replay of a
//! cache hit, so its exact repeats are answered without this component.
//!
//! The policy, in one place: only a fresh hit is offered (never a first
//! answer, a stale stand-in, an error, or a request that bypassed the
//! cache: those never reach here as hits), only while the host accepts
//! one, and not while a model split is in force (a request naming no model
//! gets its model from its routing key, which the edge key does not hold).
//! A replay is fresh for what is left of the answer's TTL, and no longer
//! than the model listing its key's digest came from is reused (a re-pulled
//! model must key new answers within seconds, so its old replays must go
//! as soon as the handler would see the new digest). It carries the
//! request headers the dialect read (its `Vary`), and is tagged with its
//! cache key, so a cache clear that removes the answer purges the replay
//! too, and with its character, model and plugin.

use llm_service_sdk::bindings::llm_service::host::edge::{self, Segment, Vary};
use llm_service_sdk::http::{BodyWriter, Response};
use llm_service_sdk::runtime;

use crate::dialect::LISTING_FRESH_S;
use crate::key::key;
use crate::pipeline::{Answer, CacheUse, Outcome, Policy};
use crate::report;
use crate::request::GenerateRequest;
use crate::stamp::Stamp;

/// A replay about to be offered.
pub struct Offer<'a> {
    request: &'a GenerateRequest,
    policy: &'a Policy,
    answer: &'a Answer,
    outcome: &'a Outcome,
    vary: Vec<Vary>,
}

impl<'a> Offer<'a> {
    /// The offer for `outcome` of `request`, if it is one to make.
    pub fn of(
        request: &'a GenerateRequest,
        policy: &'a Policy,
        outcome: &'a Outcome,
        vary: Vec<Vary>,
    ) -> Option<Self> {
        let answer = outcome.as_ref().ok().filter(|answer| answer.cache_use == CacheUse::Hit)?;
        if !edge::accepting() || !runtime::model_split().is_empty() {
            return None;
        }
        Some(Self { request, policy, answer, outcome, vary })
    }

    /// Offers a whole answer, as `render` frames it with a stamp.
    pub fn whole(self, render: impl FnOnce(&Stamp) -> Response) {
        let template = Stamp::template();
        let response = render(&template);
        let chunks = vec![template.segments(response.body())];
        self.send(&response, chunks);
    }

    /// Offers a streamed answer with `head`, its chunks as `write` writes
    /// them with a stamp.
    pub fn stream(self, head: &Response, write: impl FnOnce(&mut BodyWriter, &Stamp)) {
        let template = Stamp::template();
        let mut recording = BodyWriter::recording();
        write(&mut recording, &template);
        let chunks = recording.into_recorded().iter().map(|chunk| template.segments(chunk)).collect();
        self.send(head, chunks);
    }

    fn send(self, head: &Response, chunks: Vec<Vec<Segment>>) {
        let Self { request, policy, answer, outcome, vary } = self;
        let mut fresh_s = request.cache_ttl_s.unwrap_or(policy.cache_ttl_s).saturating_sub(answer.age_s);
        if request.question.as_ref().is_some_and(|question| question.digest.is_some()) {
            fresh_s = fresh_s.min(LISTING_FRESH_S);
        }
        let mut tags = vec![key(request, policy.backend), format!("model:{}", answer.stored.model)];
        if let Some(character) = &request.character_name {
            tags.push(format!("character:{character}"));
        }
        if let Some(plugin) = &request.plugin {
            tags.push(format!("plugin:{}", plugin.name()));
        }
        edge::offer(&edge::Replay {
            status: head.status(),
            headers: head.headers().to_vec(),
            chunks,
            vary,
            fresh_s,
            age_s: answer.age_s,
            tags,
            report: report::of_generation(request, std::time::Instant::now(), head.status(), outcome),
        });
    }
}
