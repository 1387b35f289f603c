//! `llm-service:host/edge`: the edge tier, an HTTP shared cache (RFC 9111)
//! in front of the handler, in process, bounded in bytes
//! (EDGE_CACHE_MAX_BYTES; 0 turns it off).
//!
//! The handler decides what is replayable; the host only keeps what it was
//! offered ([`replay`]) and answers exact repeats with it, without entering
//! the component. An entry's key is the SHA-256 of exactly what makes a
//! request the same request: the handler version that serves it after
//! canary routing, the method, the path and query, and the body's bytes;
//! the request headers the handler named (its `Vary`) must then have the
//! values the offer had. One variant is kept per key: a repeat with other
//! header values is the handler's, and its offer replaces the kept one.
//!
//! Freshness is the offer's, never longer than the cached answer it replays
//! stays fresh. Purges are synchronous ([`crate::purge`]): once a cache
//! clear, a model or split change, a handler or plugin change returns, no
//! replay from before it is served. A replay offered by a request that was
//! already under way when a purge happened is dropped, so a purge cannot be
//! undone by an answer computed before it.

pub mod cache_status;
pub mod config;
mod host;
pub mod replay;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

pub use self::config::EdgeConfig;
pub use self::host::{EdgeView, add_to_linker};
use self::replay::{OfferError, Replay};
use crate::purge::{PurgeCause, Purges};
use crate::registry::{counter, counter_vec};

/// What identifies a request for the edge tier (see the module's doc).
pub type EdgeKey = [u8; 32];

/// A request's place in the edge tier: its key, and the purge count when
/// it arrived (an offer after a purge is not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeTicket {
    key: EdgeKey,
    purges_seen: u64,
}

/// The edge tier, shared by every request.
pub struct EdgeCache {
    /// None when EDGE_CACHE_MAX_BYTES is 0.
    replays: Option<Cache<EdgeKey, Arc<Replay>>>,
    /// Purges so far.
    purges: AtomicU64,
    hits: prometheus::IntCounter,
    kept: prometheus::IntCounter,
    refused: prometheus::IntCounterVec,
    purged: prometheus::IntCounterVec,
}

/// An entry lives as long as its replay is fresh.
struct Freshness;

impl moka::Expiry<EdgeKey, Arc<Replay>> for Freshness {
    fn expire_after_create(&self, _key: &EdgeKey, replay: &Arc<Replay>, _at: Instant) -> Option<Duration> {
        Some(replay.fresh)
    }
}

impl EdgeCache {
    /// The tier `config` asks for; its counters join `registry`.
    pub fn new(config: &EdgeConfig, registry: &prometheus::Registry) -> Self {
        let replays = (config.edge_cache_max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(config.edge_cache_max_bytes)
                .weigher(|_key: &EdgeKey, replay: &Arc<Replay>| replay.weight)
                .expire_after(Freshness)
                .support_invalidation_closures()
                .build()
        });
        Self {
            replays,
            purges: AtomicU64::new(0),
            hits: counter(registry, "llm_service_edge_hits_total", "Requests answered by the edge tier."),
            kept: counter(
                registry,
                "llm_service_edge_replays_kept_total",
                "Replays the handler offered that the edge tier kept.",
            ),
            refused: counter_vec(
                registry,
                "llm_service_edge_offers_refused_total",
                "Replays the handler offered that the edge tier did not keep, by reason.",
                &["reason"],
            ),
            purged: counter_vec(
                registry,
                "llm_service_edge_purges_total",
                "Purges of the edge tier, by cause.",
                &["cause"],
            ),
        }
    }

    /// The ticket of a request with `method`, `path_and_query` and `body`
    /// served by handler version `version` in the cache namespace
    /// `namespace` (a tenant's; empty for the default); None when the tier
    /// is off.
    pub fn ticket(
        &self,
        namespace: &str,
        version: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Option<EdgeTicket> {
        self.replays.as_ref()?;
        let mut hash = Sha256::new();
        // Each part with its length first, so no two requests hash alike by
        // moving bytes from one part to the next.
        let parts =
            [namespace.as_bytes(), version.as_bytes(), method.as_bytes(), path_and_query.as_bytes(), body];
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        Some(EdgeTicket { key: hash.finalize().into(), purges_seen: self.purges.load(Ordering::Acquire) })
    }

    /// The replay that answers the request with `ticket` and `headers`, if
    /// one is kept and fresh.
    pub fn lookup(&self, ticket: &EdgeTicket, headers: &HeaderMap) -> Option<Arc<Replay>> {
        let replay = self.replays.as_ref()?.get(&ticket.key)?;
        if !replay.matches(headers) {
            return None;
        }
        self.hits.inc();
        Some(replay)
    }

    /// Whether an offer from the request with `ticket` would be kept.
    pub fn accepting(&self, ticket: &EdgeTicket) -> bool {
        self.replays.is_some() && self.purges.load(Ordering::Acquire) == ticket.purges_seen
    }

    /// Keeps `offer` for the request with `ticket`, for at most `fresh_for`,
    /// unless it is invalid or a purge came since the request arrived.
    pub fn keep(
        &self,
        ticket: &EdgeTicket,
        offer: crate::bindings::llm_service::host::edge::Replay,
        fresh_for: Duration,
    ) {
        let Some(replays) = &self.replays else { return };
        if !self.accepting(ticket) {
            self.refused.with_label_values(&["purged"]).inc();
            return;
        }
        let replay = match Replay::from_offer(offer, fresh_for) {
            Ok(replay) if !replay.fresh.is_zero() => replay,
            Ok(_) => return self.refused.with_label_values(&["stale"]).inc(),
            Err(error) => return self.refuse(&error),
        };
        replays.insert(ticket.key, Arc::new(replay));
        // A purge between the check above and the insert did not see this
        // entry: take it out again.
        if !self.accepting(ticket) {
            replays.invalidate(&ticket.key);
            self.refused.with_label_values(&["purged"]).inc();
            return;
        }
        self.kept.inc();
    }

    fn refuse(&self, error: &OfferError) {
        tracing::debug!(cap = "edge", %error, "offered replay not kept");
        self.refused.with_label_values(&[error.label()]).inc();
    }

    /// Counts a purge; every ticket handed out before it stops accepting.
    fn note_purge(&self, cause: &str) {
        self.purges.fetch_add(1, Ordering::AcqRel);
        self.purged.with_label_values(&[cause]).inc();
    }
}

impl Purges for EdgeCache {
    fn purge_all(&self, cause: PurgeCause) {
        let Some(replays) = &self.replays else { return };
        self.note_purge(cause.label());
        replays.invalidate_all();
    }

    fn purge_cleared(&self, prefix: &str, containing: Option<&str>) {
        let Some(replays) = &self.replays else { return };
        self.note_purge("clear");
        let (prefix, containing) = (prefix.to_string(), containing.map(str::to_string));
        let cleared = move |_key: &EdgeKey, replay: &Arc<Replay>| {
            replay.tags.iter().any(|tag| crate::caps::cache::cleared_by(tag, &prefix, containing.as_deref()))
        };
        if replays.invalidate_entries_if(cleared).is_err() {
            // Closures are enabled at build; should that ever fail, purge all.
            replays.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::llm_service::host::edge::{self as wit, Segment};
    use crate::bindings::llm_service::host::runtime::GenerationReport;

    fn tier() -> EdgeCache {
        EdgeCache::new(&EdgeConfig::default(), &prometheus::Registry::new())
    }

    fn offer(tag: &str) -> wit::Replay {
        wit::Replay {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![vec![Segment::Literal(b"{}".to_vec())]],
            vary: Vec::new(),
            fresh_s: 60,
            age_s: 0,
            tags: vec![tag.into()],
            report: GenerationReport {
                character: None,
                model: "m".into(),
                cache_hit: true,
                tokens_generated: 1,
                prompt_length: 1,
                status: 200,
                response_time_s: 0.0,
                error_kind: None,
                prompt: None,
            },
        }
    }

    fn kept(tier: &EdgeCache, body: &str, tag: &str) -> EdgeTicket {
        let ticket = tier.ticket("", "v1", "POST", "/generate", body.as_bytes()).expect("on");
        tier.keep(&ticket, offer(tag), Duration::from_secs(60));
        ticket
    }

    #[test]
    fn the_key_is_the_exact_request_and_its_handler_version() {
        let tier = tier();
        let ticket = kept(&tier, "{\"prompt\":\"a\"}", "llm_response:x:lois:y");
        assert!(tier.lookup(&ticket, &HeaderMap::new()).is_some());
        for (version, body) in [("v2", "{\"prompt\":\"a\"}"), ("v1", "{\"prompt\": \"a\"}")] {
            let other = tier.ticket("", version, "POST", "/generate", body.as_bytes()).expect("on");
            assert!(tier.lookup(&other, &HeaderMap::new()).is_none(), "{version} {body}");
        }
    }

    #[test]
    fn a_clear_purges_the_replays_tagged_with_what_it_clears() {
        let tier = tier();
        let lois = kept(&tier, "lois", "llm_response:x:lois:y");
        let peter = kept(&tier, "peter", "llm_response:x:peter:y");
        tier.purge_cleared("llm_response:", Some(":lois:"));
        assert!(tier.lookup(&lois, &HeaderMap::new()).is_none());
        assert!(tier.lookup(&peter, &HeaderMap::new()).is_some());
        tier.purge_all(PurgeCause::Model);
        assert!(tier.lookup(&peter, &HeaderMap::new()).is_none());
    }

    #[test]
    fn an_offer_from_before_a_purge_is_not_kept() {
        let tier = tier();
        let ticket = tier.ticket("", "v1", "POST", "/generate", b"{}").expect("on");
        tier.purge_all(PurgeCause::Handler);
        assert!(!tier.accepting(&ticket));
        tier.keep(&ticket, offer("t"), Duration::from_secs(60));
        assert!(tier.lookup(&ticket, &HeaderMap::new()).is_none());
    }

    #[test]
    fn off_keeps_nothing() {
        let tier = EdgeCache::new(&EdgeConfig { edge_cache_max_bytes: 0 }, &prometheus::Registry::new());
        assert!(tier.ticket("", "v1", "POST", "/generate", b"{}").is_none());
    }
}
