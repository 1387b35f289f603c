//! Single-flight: while one request computes the value for a key, others
//! with the same key follow it instead of computing it again.
//!
//! The first to [`FlightTable::join`] a key leads and gets a
//! [`FlightLease`]; it may [`publish`](FlightLease::publish) pieces of a
//! streamed answer, and must land (a value) or crash (a failure) the flight.
//! Dropping the lease unfinished abandons it, so followers never hang on a
//! leader that went away. A [`Follower`] sees every piece published, from
//! the first (however late it joined), then the end; its waits are bounded
//! by the deadline it is given. A follower that leaves does not affect the
//! leader. The flight leaves the table before its end is announced, so a
//! request arriving after the end starts afresh (and finds the cache the
//! leader filled first).
//!
//! A lease may be [mirrored](FlightLease::mirror_to): every chunk and the
//! end are also sent to a channel, in order, which is how a flight is
//! widened beyond this process ([`super::FlightSharing`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::bindings::llm_service::host::cache::Failure;
use crate::traces::spans::LinkTarget;

/// How a leader failed, as its followers see it.
#[derive(Debug, Clone)]
pub enum Crash {
    /// A typed failure (the `lead` resource's `crash`).
    Typed(Failure),
    /// Opaque bytes (the first 0.1 `flight` resource's `crash`).
    Encoded(Bytes),
}

/// How a flight ended.
#[derive(Debug, Clone)]
pub enum End {
    /// The leader's value.
    Landed(Bytes),
    /// The leader's failure.
    Crashed(Crash),
    /// The leader went away, or the follower's deadline came first.
    Abandoned,
}

/// What a follower learns next.
#[derive(Debug, Clone)]
pub enum Event {
    /// A piece of a streamed answer.
    Chunk(Bytes),
    /// The end.
    End(End),
}

#[derive(Debug, Default)]
struct Progress {
    chunks: Vec<Bytes>,
    end: Option<End>,
}

/// One flight's shared state; `changed` ticks on every publish and the end.
#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    changed: watch::Sender<u64>,
    /// The leader's span, which its followers' spans link to (traced only).
    leader: Option<LinkTarget>,
    /// Whether the flight relays one led elsewhere.
    relayed: AtomicBool,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A poisoned lock still holds consistent chunks: every update is one push.
        self.progress.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn tick(&self) {
        self.changed.send_modify(|version| *version += 1);
    }
}

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub struct FlightTable {
    flights: Mutex<HashMap<String, Arc<Shared>>>,
}

/// Leading or following a flight.
pub enum Join {
    /// The caller computes the value.
    Lead(FlightLease),
    /// Another request does.
    Follow(Follower),
}

impl FlightTable {
    /// Joins the flight for `key`, starting one if there is none.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut flights = self.flights.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(shared) = flights.get(key) {
            return Join::Follow(Follower { shared: shared.clone(), seen: 0 });
        }
        let shared = Arc::new(Shared {
            progress: Mutex::default(),
            changed: watch::Sender::new(0),
            leader: LinkTarget::current(),
            relayed: AtomicBool::new(false),
        });
        flights.insert(key.to_string(), shared.clone());
        Join::Lead(FlightLease {
            key: key.to_string(),
            shared,
            table: self.clone(),
            finished: false,
            mirror: None,
        })
    }

    /// Flights in progress.
    pub fn len(&self) -> usize {
        self.flights.lock().unwrap_or_else(|poison| poison.into_inner()).len()
    }

    /// Whether no flight is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Following another request's flight.
#[derive(Debug)]
pub struct Follower {
    shared: Arc<Shared>,
    /// Chunks handed out so far.
    seen: usize,
}

impl Follower {
    /// The leader's span, when it is traced.
    pub fn leader(&self) -> Option<&LinkTarget> {
        self.shared.leader.as_ref()
    }

    /// Whether the flight relays one led outside this process.
    pub fn relayed(&self) -> bool {
        self.shared.relayed.load(Ordering::Relaxed)
    }

    /// The next chunk or the end, waiting at most until `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Event {
        let mut changed = self.shared.changed.subscribe();
        loop {
            // Marked seen before reading, so a tick after the read wakes us.
            changed.borrow_and_update();
            {
                let progress = self.shared.progress();
                if let Some(chunk) = progress.chunks.get(self.seen) {
                    self.seen += 1;
                    return Event::Chunk(chunk.clone());
                }
                if let Some(end) = &progress.end {
                    return Event::End(end.clone());
                }
            }
            let wait = tokio::time::timeout_at(deadline.into(), changed.changed());
            if !matches!(wait.await, Ok(Ok(()))) {
                return Event::End(End::Abandoned);
            }
        }
    }

    /// The end, skipping chunks, waiting at most until `deadline`.
    pub async fn end(&mut self, deadline: Instant) -> End {
        loop {
            if let Event::End(end) = self.next(deadline).await {
                return end;
            }
        }
    }
}

/// The leader's duty to end a flight.
#[derive(Debug)]
pub struct FlightLease {
    key: String,
    shared: Arc<Shared>,
    table: Arc<FlightTable>,
    finished: bool,
    mirror: Option<mpsc::UnboundedSender<Event>>,
}

impl FlightLease {
    /// Hands `chunk` to every follower, present and future.
    pub fn publish(&self, chunk: Bytes) {
        if let Some(mirror) = &self.mirror {
            // A closed mirror (its task gave up) only stops the sharing.
            let _ = mirror.send(Event::Chunk(chunk.clone()));
        }
        self.shared.progress().chunks.push(chunk);
        self.shared.tick();
    }

    /// Sends every later chunk and the end to `mirror` too.
    pub fn mirror_to(&mut self, mirror: mpsc::UnboundedSender<Event>) {
        self.mirror = Some(mirror);
    }

    /// Marks the flight as relaying one led outside this process.
    pub fn relays_the_fleet(&self) {
        self.shared.relayed.store(true, Ordering::Relaxed);
    }

    /// Whether the flight is mirrored (shared beyond this process).
    pub fn is_mirrored(&self) -> bool {
        self.mirror.is_some()
    }

    /// A follower of this flight, from its first chunk.
    pub fn follower(&self) -> Follower {
        Follower { shared: self.shared.clone(), seen: 0 }
    }

    /// Requests following the flight now: every holder of its state but
    /// this lease and the table's entry (a follower that went away has
    /// dropped its hold).
    pub fn followers(&self) -> u32 {
        let holders = Arc::strong_count(&self.shared).saturating_sub(2);
        u32::try_from(holders).unwrap_or(u32::MAX)
    }

    /// Ends the flight with `end` for every follower.
    pub fn finish(mut self, end: End) {
        self.end(end);
    }

    fn end(&mut self, end: End) {
        if self.finished {
            return;
        }
        self.finished = true;
        let mut flights = self.table.flights.lock().unwrap_or_else(|poison| poison.into_inner());
        if flights.get(&self.key).is_some_and(|shared| Arc::ptr_eq(shared, &self.shared)) {
            flights.remove(&self.key);
        }
        drop(flights);
        if let Some(mirror) = self.mirror.take() {
            let _ = mirror.send(Event::End(end.clone()));
        }
        self.shared.progress().end = Some(end);
        self.shared.tick();
    }
}

impl Drop for FlightLease {
    fn drop(&mut self) {
        self.end(End::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn followers_get_what_the_leader_lands() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!("first joiner leads") };
        let Join::Follow(mut follower) = table.join("k") else { panic!("second joiner follows") };
        let waiter = tokio::spawn(async move { follower.end(soon()).await });
        lease.finish(End::Landed(Bytes::from_static(b"v")));
        assert!(matches!(waiter.await.unwrap(), End::Landed(value) if value == "v"));
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn a_late_follower_gets_every_chunk_then_the_end() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!() };
        lease.publish(Bytes::from_static(b"a"));
        lease.publish(Bytes::from_static(b"b"));
        let Join::Follow(mut late) = table.join("k") else { panic!() };
        assert!(matches!(late.next(soon()).await, Event::Chunk(chunk) if chunk == "a"));
        assert!(matches!(late.next(soon()).await, Event::Chunk(chunk) if chunk == "b"));
        let waiter = tokio::spawn(async move { (late.next(soon()).await, late.next(soon()).await) });
        lease.publish(Bytes::from_static(b"c"));
        lease.finish(End::Landed(Bytes::from_static(b"abc")));
        let (third, end) = waiter.await.unwrap();
        assert!(matches!(third, Event::Chunk(chunk) if chunk == "c"));
        assert!(matches!(end, Event::End(End::Landed(value)) if value == "abc"));
    }

    #[tokio::test]
    async fn followers_are_counted_while_they_wait() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!("the first joiner leads") };
        assert_eq!(lease.followers(), 0);
        let Join::Follow(first) = table.join("k") else { panic!("a second joiner follows") };
        let Join::Follow(second) = table.join("k") else { panic!("a third joiner follows") };
        assert_eq!(lease.followers(), 2);
        drop(first);
        assert_eq!(lease.followers(), 1, "a follower that leaves is not counted");
        drop(second);
        assert_eq!(lease.followers(), 0);
    }

    #[tokio::test]
    async fn a_dropped_lease_abandons_the_flight() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!() };
        let Join::Follow(mut follower) = table.join("k") else { panic!() };
        drop(lease);
        assert!(matches!(follower.end(soon()).await, End::Abandoned));
        assert!(matches!(table.join("k"), Join::Lead(_)), "the key is free again");
    }

    #[tokio::test]
    async fn a_follower_stops_waiting_at_its_deadline() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(_lease) = table.join("k") else { panic!() };
        let Join::Follow(mut follower) = table.join("k") else { panic!() };
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(matches!(follower.end(deadline).await, End::Abandoned));
        assert!(Instant::now() >= deadline);
    }
}
