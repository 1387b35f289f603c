//! Single-flight: while one request computes the value for a key, others
//! with the same key wait for its outcome instead of computing it again.
//!
//! The first to [`FlightTable::join`] a key leads and gets a
//! [`FlightLease`]; it must land (a value) or crash (an error) the flight,
//! and dropping the lease unfinished abandons it, so waiters never hang on a
//! leader that went away. A waiter that leaves does not affect the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

/// How a flight ended, as its waiters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The leader's value.
    Landed(Bytes),
    /// The leader's (encoded) error.
    Crashed(Bytes),
    /// The leader went away, or the wait ran out.
    Abandoned,
}

type Watch = watch::Receiver<Option<Outcome>>;

/// The flights in progress, by key.
#[derive(Debug, Default)]
pub struct FlightTable {
    flights: Mutex<HashMap<String, Watch>>,
}

/// Leading or following a flight.
pub enum Join {
    /// The caller computes the value.
    Lead(FlightLease),
    /// Another request does; wait with [`follow`].
    Follow(Watch),
}

impl FlightTable {
    /// Joins the flight for `key`, starting one if there is none.
    pub fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut flights = self.flights.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(watch) = flights.get(key) {
            return Join::Follow(watch.clone());
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(key.to_string(), receiver);
        Join::Lead(FlightLease { key: key.to_string(), sender, table: self.clone(), finished: false })
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

/// Waits up to `wait` for the leader's outcome.
pub async fn follow(mut watch: Watch, wait: Duration) -> Outcome {
    match tokio::time::timeout(wait, watch.wait_for(Option::is_some)).await {
        Ok(Ok(outcome)) => outcome.clone().unwrap_or(Outcome::Abandoned),
        Ok(Err(_)) | Err(_) => Outcome::Abandoned,
    }
}

/// The leader's duty to end a flight.
#[derive(Debug)]
pub struct FlightLease {
    key: String,
    sender: watch::Sender<Option<Outcome>>,
    table: Arc<FlightTable>,
    finished: bool,
}

impl FlightLease {
    /// Ends the flight with `outcome` for every waiter.
    pub fn finish(mut self, outcome: Outcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        // Out of the table first: a request arriving from now on starts
        // afresh (and finds the value in the cache, which the leader filled
        // before landing).
        let mut flights = self.table.flights.lock().unwrap_or_else(|poison| poison.into_inner());
        if flights.get(&self.key).is_some_and(|watch| watch.same_channel(&self.sender.subscribe())) {
            flights.remove(&self.key);
        }
        drop(flights);
        self.sender.send_replace(Some(outcome));
    }
}

impl Drop for FlightLease {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_what_the_leader_lands() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!("first joiner leads") };
        let Join::Follow(watch) = table.join("k") else { panic!("second joiner follows") };
        let waiter = tokio::spawn(follow(watch, Duration::from_secs(5)));
        lease.finish(Outcome::Landed(Bytes::from_static(b"v")));
        assert_eq!(waiter.await.unwrap(), Outcome::Landed(Bytes::from_static(b"v")));
        assert!(table.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_lease_abandons_the_flight() {
        let table = Arc::new(FlightTable::default());
        let Join::Lead(lease) = table.join("k") else { panic!() };
        let Join::Follow(watch) = table.join("k") else { panic!() };
        drop(lease);
        assert_eq!(follow(watch, Duration::from_secs(5)).await, Outcome::Abandoned);
        assert!(matches!(table.join("k"), Join::Lead(_)), "the key is free again");
    }
}
