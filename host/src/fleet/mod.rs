//! The fleet: replicas that share a store (KeyDB, Redis or a Redis
//! Cluster, [`crate::store`]) and so act as one service. A [`Fleet`] exists
//! only when there is a store, decided once at wiring; without one there
//! is no value to ask, and nothing here runs.
//!
//! What a replica shares, each in its own file:
//! - [`events`]: the stream of what replicas did (a model switch, a cache
//!   clear, a component pushed, a key changed) and the keys the fleet's
//!   state lives under;
//! - [`sync`]: follows that stream and applies what the others did;
//! - [`flight`]: the fleet-wide single-flight, which the cache asks to
//!   widen a leader's flight ([`crate::caps::cache::FlightSharing`]);
//! - [`keys`]: the client keys' records and limits;
//! - [`seal`]: the signature on components shared through the store;
//! - [`store`]: what all of them ask of the store.
//!
//! Every call is answered by the store or fails with its error (logged and
//! counted once per outage by the store's gate); none of them takes a
//! request down.

pub mod events;
pub mod flight;
pub mod keys;
pub mod seal;
pub mod store;
pub mod sync;

use std::sync::Arc;

use self::events::{
    EVENTS_KEPT, EVENTS_KEY, FleetEvent, HANDLER_KEY, MODEL_KEY, PLUGINS_KEY, REPLICAS_KEY, plugin_key,
};
use self::flight::SharedFlights;
use self::store::FleetStore;
use crate::caps::cache::{FlightLease, FlightSharing, Found, ResponseCache};
use crate::caps::telemetry::ModelSwitches;
use crate::store::{Store, StoreError};

/// This replica's part in the fleet: cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    store: Arc<dyn FleetStore>,
    /// This replica's name in what it publishes.
    replica: Arc<str>,
    flights: SharedFlights,
}

impl Fleet {
    /// This replica's part in the fleet that shares `store`, under a fresh
    /// random name; its metrics join the others in `registry`.
    pub fn new(store: &Store, registry: &prometheus::Registry) -> Self {
        let store = store::of(store);
        Self {
            flights: SharedFlights::new(store.clone(), registry),
            store,
            replica: Arc::from(format!("{:016x}", fastrand::u64(..))),
        }
    }

    /// This replica's name in the events it publishes.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The store, for what the fleet's parts ask of it.
    pub fn store(&self) -> &Arc<dyn FleetStore> {
        &self.store
    }

    /// Appends `event` to the stream.
    pub async fn publish(&self, event: &FleetEvent) -> Result<(), StoreError> {
        let payload = serde_json::to_string(event).unwrap_or_default();
        self.store.append(EVENTS_KEY, &payload, EVENTS_KEPT).await
    }

    /// The events after stream id `after`, with their ids, oldest first;
    /// entries that do not parse are skipped.
    pub async fn events_after(&self, after: &str) -> Result<Vec<(String, FleetEvent)>, StoreError> {
        let entries = self.store.read_after(EVENTS_KEY, after).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, payload)| Some((id, serde_json::from_str(&payload).ok()?)))
            .collect())
    }

    /// The id of the stream's last event ("0-0" when empty).
    pub async fn last_event_id(&self) -> Result<String, StoreError> {
        self.store.last_id(EVENTS_KEY).await
    }

    /// The model the fleet uses, if one was switched to.
    pub async fn model(&self) -> Result<Option<String>, StoreError> {
        let value = self.store.get_raw(MODEL_KEY).await?;
        Ok(value.and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Records `model` as the fleet's, and announces it.
    pub async fn switch_model(&self, model: &str) -> Result<(), StoreError> {
        self.store.set_raw(MODEL_KEY, model.as_bytes()).await?;
        self.publish(&FleetEvent::Model { origin: self.replica.to_string(), model: model.to_string() }).await
    }

    /// Stores a handler pushed here, `bytes` with `sha256`, for the fleet,
    /// and announces it.
    pub async fn share_handler(&self, bytes: &[u8], sha256: &str) -> Result<(), StoreError> {
        self.store.set_raw(HANDLER_KEY, bytes).await?;
        let event = FleetEvent::Handler { origin: self.replica.to_string(), sha256: sha256.to_string() };
        self.publish(&event).await
    }

    /// The handler the fleet was last given, if any.
    pub async fn handler(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get_raw(HANDLER_KEY).await
    }

    /// Stores a plugin pushed here for the fleet, and announces it.
    pub async fn share_plugin(&self, name: &str, bytes: &[u8], sha256: &str) -> Result<(), StoreError> {
        self.store.set_raw(&plugin_key(name), bytes).await?;
        self.store.hash_set(PLUGINS_KEY, name, sha256).await?;
        self.publish(&FleetEvent::Plugin { origin: self.replica.to_string(), name: name.to_string() }).await
    }

    /// Withdraws a plugin unloaded here from the fleet, and announces it.
    pub async fn unshare_plugin(&self, name: &str) -> Result<(), StoreError> {
        self.store.hash_delete(PLUGINS_KEY, name).await?;
        self.store.delete(&plugin_key(name)).await?;
        let event = FleetEvent::PluginRemoved { origin: self.replica.to_string(), name: name.to_string() };
        self.publish(&event).await
    }

    /// The plugins the fleet was given: (name, bytes).
    pub async fn plugins(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let names = self.store.hash_all(PLUGINS_KEY).await?;
        let mut plugins = Vec::with_capacity(names.len());
        for (name, _sha256) in names {
            if let Some(bytes) = self.plugin(&name).await? {
                plugins.push((name, bytes));
            }
        }
        Ok(plugins)
    }

    /// The plugin `name` as the fleet was given it, if it was.
    pub async fn plugin(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get_raw(&plugin_key(name)).await
    }

    /// Records what this replica serves (`report`, JSON).
    pub async fn report_replica(&self, report: &serde_json::Value) -> Result<(), StoreError> {
        self.store.hash_set(REPLICAS_KEY, &self.replica, &report.to_string()).await
    }

    /// What every replica last reported, by replica.
    pub async fn replicas(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let entries = self.store.hash_all(REPLICAS_KEY).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(replica, text)| Some((replica, serde_json::from_str(&text).ok()?)))
            .collect())
    }
}

#[async_trait::async_trait]
impl FlightSharing for Fleet {
    async fn widen(&self, cache: &ResponseCache, key: &str, lease: FlightLease) -> Found {
        self.flights.widen(cache, key, lease).await
    }

    async fn cleared(&self, prefix: &str, containing: Option<&str>) {
        // The other replicas drop their process tier's copies too; an
        // unreachable store was logged by its gate.
        let event = FleetEvent::Clear {
            origin: self.replica.to_string(),
            prefix: prefix.to_string(),
            containing: containing.map(str::to_string),
        };
        let _ = self.publish(&event).await;
    }
}

impl ModelSwitches for Fleet {
    fn switched(&self, model: &str) {
        let (fleet, model) = (self.clone(), model.to_string());
        // An unreachable store was logged by its gate; this replica switched.
        tokio::spawn(async move { fleet.switch_model(&model).await });
    }
}
