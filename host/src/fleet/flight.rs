//! Single-flight across replicas: the first replica to miss a key leads it
//! for the whole fleet; the others follow it through the shared store.
//!
//! Within a process, requests already share one flight
//! ([`crate::caps::cache::flight`]).
//! This module decides, for the process's leader of a key, whether it leads
//! the fleet too or relays another replica's flight:
//! - A leader takes the lease `{llm-service:flight:<hash>}:lease` with
//!   `SET NX PX` ([`LEASE`]; renewed every [`RENEW_EVERY`] while it
//!   generates, released by compare-and-delete) and mirrors its flight's
//!   chunks and end to the stream `{llm-service:flight:<hash>}:<token>`,
//!   in the same slot. Before generating it reads the shared tier once
//!   more, so an answer landed between its miss and its lease is a hit.
//! - A replica that finds the lease taken relays instead: it reads that
//!   stream from its start and replays it into its own process's flight,
//!   so every local follower, however late, gets every chunk, then the end.
//! - A leader that dies stops renewing: its lease expires, and the relays
//!   end their flights as abandoned. Their requests look up again and one
//!   of them takes the lease (the handler's rule for an abandoned flight).
//! - The shared store failing (or absent) leaves the flight in-process.
//!
//! A leader stores its answer in the shared tier before the stream's end is
//! written ([`crate::caps::cache::ResponseCache::land`]), so a request that comes after
//! the end finds the value rather than a free lease. Relays wait on the
//! stream with `XREAD BLOCK`, on connections of their own (the store's
//! [`Readers`](crate::store::Readers)): a blocked read on the connection
//! every cache call shares would hold them all up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::store::FleetStore;
use crate::bindings::llm_service::host::cache::Failure;
use crate::caps::cache::flight::{Crash, End, Event, FlightLease};
use crate::caps::cache::{Found, ResponseCache, Tier};
use crate::registry::counter_vec;

/// How long a lease outlives its last renewal: how soon a dead leader is
/// replaced.
const LEASE: Duration = Duration::from_secs(3);
/// How often a living leader renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a relay waits on its stream per read; after a read that found
/// nothing, it checks that its leader lives.
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// How long a flight's stream outlives its last entry or renewal.
const STREAM_TTL: Duration = Duration::from_secs(30);
/// Lease attempts before a process's leader gives up sharing (each further
/// one means a leader ended between our lease try and our look at it).
const ATTEMPTS: usize = 3;

/// How a process's leader took part in the fleet's flight.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// It leads for the fleet.
    Led,
    /// It relays another replica's flight.
    Relayed,
    /// The answer landed meanwhile.
    Found,
    /// The store failed: the flight stays in this process.
    InProcess,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Self::Led => "led",
            Self::Relayed => "relayed",
            Self::Found => "found",
            Self::InProcess => "in_process",
        }
    }
}

/// The keys of `key`'s flight share one hash tag (one cluster slot).
fn tag(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..12].iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{{llm-service:flight:{hex}}}")
}

/// The fleet-wide flights of this replica's leaders: cheap to clone.
#[derive(Clone)]
pub struct SharedFlights {
    store: Arc<dyn FleetStore>,
    /// Process leaders by their part in the fleet's flight.
    roles: prometheus::IntCounterVec,
}

impl SharedFlights {
    /// Flights shared through `store`; counted in `registry`.
    pub fn new(store: Arc<dyn FleetStore>, registry: &prometheus::Registry) -> Self {
        let roles = counter_vec(
            registry,
            "llm_service_cache_shared_flights_total",
            "Generations a replica would lead, by their part in the fleet's single-flight: led, relayed (another replica leads), found (landed meanwhile), in_process (store unavailable).",
            &["role"],
        );
        Self { store, roles }
    }

    /// For this process's leader of `key` (`lease`): lead the fleet's
    /// flight, relay another replica's, or find the answer landed in
    /// `cache`.
    pub async fn widen(&self, cache: &ResponseCache, key: &str, mut lease: FlightLease) -> Found {
        let tag = tag(key);
        let lease_key = format!("{tag}:lease");
        for _ in 0..ATTEMPTS {
            let token = format!("{:016x}", fastrand::u64(..));
            let holder = match self.store.lease_take(&lease_key, &token, LEASE).await {
                Ok(true) => None,
                Ok(false) => match self.store.get_raw(&lease_key).await {
                    Ok(holder) => Some(holder),
                    Err(_) => break,
                },
                Err(_) => break,
            };
            if let Some(stamped) = cache.fresh(key).await {
                if holder.is_none() {
                    let _ = self.store.lease_release(&lease_key, &token).await;
                }
                self.count_flight(Role::Found);
                lease.finish(End::Landed(stamped.value.clone()));
                return Found::Fresh(stamped, Tier::Shared);
            }
            match holder {
                None => {
                    self.count_flight(Role::Led);
                    let (sender, events) = mpsc::unbounded_channel();
                    lease.mirror_to(sender);
                    let stream = format!("{tag}:{token}");
                    tokio::spawn(self.clone().mirror(lease_key, stream, token, events));
                    return Found::Lead(lease);
                }
                Some(Some(holder)) => {
                    self.count_flight(Role::Relayed);
                    let holder = String::from_utf8_lossy(&holder).into_owned();
                    lease.relays_the_fleet();
                    let follower = lease.follower();
                    tokio::spawn(self.clone().relay(lease_key, format!("{tag}:{holder}"), holder, lease));
                    return Found::Follow(follower);
                }
                // The leader ended between our try and our look: try again.
                Some(None) => {}
            }
        }
        self.count_flight(Role::InProcess);
        Found::Lead(lease)
    }

    fn count_flight(&self, role: Role) {
        self.roles.with_label_values(&[role.label()]).inc();
    }

    /// Writes the leader's chunks and end to `stream` and keeps its lease
    /// until the end; stops sharing (releasing the lease) when a write
    /// fails or the lease was lost.
    async fn mirror(
        self,
        lease_key: String,
        stream: String,
        token: String,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) {
        let mut renew = tokio::time::interval_at((Instant::now() + RENEW_EVERY).into(), RENEW_EVERY);
        loop {
            tokio::select! {
                event = events.recv() => {
                    // What queued meanwhile goes in the same round trip.
                    let mut batch = vec![event.unwrap_or(Event::End(End::Abandoned))];
                    while let Ok(more) = events.try_recv() {
                        batch.push(more);
                    }
                    let ended = batch.iter().any(|event| matches!(event, Event::End(_)));
                    let entries: Vec<(&str, Bytes)> = batch.into_iter().map(entry).collect();
                    let written = self.store.flight_append(&stream, &entries, STREAM_TTL).await;
                    if written.is_err() || ended {
                        break;
                    }
                }
                _ = renew.tick() => {
                    let renewed = self.store.lease_renew(&lease_key, &token, LEASE).await;
                    let kept = self.store.flight_append(&stream, &[], STREAM_TTL).await;
                    if !matches!(renewed, Ok(true)) || kept.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = self.store.lease_release(&lease_key, &token).await;
    }

    /// Replays another replica's flight (`stream`, led by `token`) into
    /// this process's `lease`, until its end, its leader's death, a store
    /// failure, or no local request following it any more. Every way out
    /// but the end drops `lease`, which abandons the local flight.
    async fn relay(self, lease_key: String, stream: String, token: String, lease: FlightLease) {
        let mut after = "0-0".to_string();
        let mut checked = Instant::now();
        let mut leader_gone = false;
        while lease.followers() > 0 {
            // After the leader went, only an end already written is worth a read.
            let block = if leader_gone { Duration::from_millis(1) } else { LEASE_CHECK_EVERY };
            let read = self.store.flight_read(&stream, &after, block).await;
            let Ok(entries) = read else { return };
            let quiet = entries.is_empty();
            for (id, kind, data) in entries {
                after = id;
                match event(&kind, data) {
                    Event::Chunk(chunk) => lease.publish(chunk),
                    Event::End(end) => return lease.finish(end),
                }
            }
            // The read after finding the lease gone found no end either.
            if leader_gone {
                return;
            }
            if quiet && checked.elapsed() >= LEASE_CHECK_EVERY {
                checked = Instant::now();
                let holder = self.store.get_raw(&lease_key).await;
                // Gone or another's: one more read, for an end written
                // just before the release.
                leader_gone = !matches!(holder, Ok(Some(holder)) if holder == token.as_bytes());
            }
        }
    }
}

/// A flight event as a stream entry (kind, data).
fn entry(event: Event) -> (&'static str, Bytes) {
    match event {
        Event::Chunk(chunk) => ("chunk", chunk),
        Event::End(End::Landed(value)) => ("landed", value),
        Event::End(End::Crashed(Crash::Typed(failure))) => {
            let failure = json!({
                "status": failure.status,
                "kind": failure.kind,
                "message": failure.message,
                "subject": failure.subject,
                "retry_after_s": failure.retry_after_s,
            });
            ("crashed", Bytes::from(failure.to_string()))
        }
        // An opaque failure (first protocol) means nothing elsewhere.
        Event::End(End::Crashed(Crash::Encoded(_)) | End::Abandoned) => ("abandoned", Bytes::new()),
    }
}

/// A stream entry as a flight event; anything unreadable abandons.
fn event(kind: &str, data: Bytes) -> Event {
    match kind {
        "chunk" => Event::Chunk(data),
        "landed" => Event::End(End::Landed(data)),
        "crashed" => {
            Event::End(failure(&data).map_or(End::Abandoned, |failure| End::Crashed(Crash::Typed(failure))))
        }
        _ => Event::End(End::Abandoned),
    }
}

fn failure(data: &[u8]) -> Option<Failure> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    let text = |field: &str| value[field].as_str().map(str::to_string);
    Some(Failure {
        status: u16::try_from(value["status"].as_u64()?).ok()?,
        kind: text("kind")?,
        message: text("message")?,
        subject: text("subject"),
        retry_after_s: value["retry_after_s"].as_u64().and_then(|seconds| u32::try_from(seconds).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_survives_the_stream() {
        let failure = Failure {
            status: 503,
            kind: "backend_unavailable".into(),
            message: "down".into(),
            subject: Some("m".into()),
            retry_after_s: Some(5),
        };
        let (kind, data) = entry(Event::End(End::Crashed(Crash::Typed(failure.clone()))));
        let Event::End(End::Crashed(Crash::Typed(back))) = event(kind, data) else { panic!("a crash") };
        assert_eq!(
            (back.status, back.kind, back.subject, back.retry_after_s),
            (503, failure.kind, failure.subject, Some(5))
        );
        let (kind, data) = entry(Event::Chunk(Bytes::from_static(b"a")));
        assert!(matches!(event(kind, data), Event::Chunk(chunk) if chunk == "a"));
        let (kind, data) = entry(Event::End(End::Landed(Bytes::from_static(b"v"))));
        assert!(matches!(event(kind, data), Event::End(End::Landed(value)) if value == "v"));
        assert!(matches!(event("crashed", Bytes::from_static(b"{")), Event::End(End::Abandoned)));
    }

    #[test]
    fn a_flights_keys_share_one_hash_tag() {
        let tag = tag("llm_response:peter:abc");
        assert!(tag.starts_with("{llm-service:flight:") && tag.ends_with('}'));
        assert_ne!(tag, super::tag("llm_response:lois:abc"));
    }
}
