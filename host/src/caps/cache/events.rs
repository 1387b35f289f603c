//! What replicas sharing a store tell each other, through it: a stream of
//! events (a model switch, a cache clear) that each replica reads from where
//! it left off, and the current model under a key of its own. Both keys
//! carry the `{llm-service}` hash tag, so a Redis Cluster keeps them in one
//! slot. Without a shared store nothing is published and nothing is read.
//!
//! Reading is polling (`XREAD` without `BLOCK`): a blocking read would hold
//! up the multiplexed connection every cache call shares.

use serde::{Deserialize, Serialize};

use super::{CacheError, ResponseCache};

/// The stream of events.
pub const EVENTS_KEY: &str = "{llm-service}:events";
/// The current model.
pub const MODEL_KEY: &str = "{llm-service}:model";
/// The handler component last pushed through an admin API, as its bytes.
pub const HANDLER_KEY: &str = "{llm-service}:handler";
/// The plugins pushed through an admin API: name → sha256 (each plugin's
/// bytes under [`plugin_key`]).
pub const PLUGINS_KEY: &str = "{llm-service}:plugins";
/// What each replica serves: replica → JSON, rewritten every few seconds.
pub const REPLICAS_KEY: &str = "{llm-service}:replicas";
/// Events kept in the stream (older ones are trimmed).
pub const EVENTS_KEPT: usize = 1000;

/// One event, as JSON in the stream's `event` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FleetEvent {
    /// The current model changed.
    Model {
        /// The replica that switched it.
        origin: String,
        /// The new model.
        model: String,
    },
    /// A handler was pushed (its bytes are under [`HANDLER_KEY`]).
    Handler {
        /// The replica it was pushed to.
        origin: String,
        /// Its sha256.
        sha256: String,
    },
    /// A plugin was pushed (its bytes are under [`plugin_key`]).
    Plugin {
        /// The replica it was pushed to.
        origin: String,
        /// Its name.
        name: String,
    },
    /// A plugin was unloaded.
    PluginRemoved {
        /// The replica it was unloaded from.
        origin: String,
        /// Its name.
        name: String,
    },
    /// A client key was made, changed or revoked (the records are under
    /// [`crate::caps::cache::key_store::KEYS_KEY`]).
    Keys {
        /// The replica it was changed on.
        origin: String,
    },
    /// Cached answers were cleared.
    Clear {
        /// The replica that cleared.
        origin: String,
        /// The keys' prefix.
        prefix: String,
        /// What they contain, if the clear was narrowed.
        containing: Option<String>,
    },
}

impl FleetEvent {
    /// The replica it came from.
    pub fn origin(&self) -> &str {
        match self {
            Self::Model { origin, .. }
            | Self::Handler { origin, .. }
            | Self::Plugin { origin, .. }
            | Self::PluginRemoved { origin, .. }
            | Self::Keys { origin }
            | Self::Clear { origin, .. } => origin,
        }
    }
}

impl ResponseCache {
    /// This replica's name in the events it publishes.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The event that says this replica switched to `model`.
    pub fn event_model(&self, model: &str) -> FleetEvent {
        FleetEvent::Model { origin: self.replica.clone(), model: model.to_string() }
    }

    /// Whether there is a store to share through.
    pub fn shares(&self) -> bool {
        self.shared.name() != "none"
    }

    /// Appends `event` to the stream (nothing without a store).
    pub async fn publish(&self, event: &FleetEvent) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        let payload = serde_json::to_string(event).unwrap_or_default();
        self.shared_call(|| self.shared.append(EVENTS_KEY, &payload, EVENTS_KEPT)).await
    }

    /// The events after stream id `after`, with their ids, oldest first;
    /// entries that do not parse are skipped.
    pub async fn events_after(&self, after: &str) -> Result<Vec<(String, FleetEvent)>, CacheError> {
        let entries = self.shared_call(|| self.shared.read_after(EVENTS_KEY, after)).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, payload)| Some((id, serde_json::from_str(&payload).ok()?)))
            .collect())
    }

    /// The id of the stream's last event ("0-0" when empty).
    pub async fn last_event_id(&self) -> Result<String, CacheError> {
        self.shared_call(|| self.shared.last_id(EVENTS_KEY)).await
    }

    /// The model the fleet uses, if one was switched to.
    pub async fn fleet_model(&self) -> Result<Option<String>, CacheError> {
        if !self.shares() {
            return Ok(None);
        }
        let value = self.shared_call(|| self.shared.get_raw(MODEL_KEY)).await?;
        Ok(value.and_then(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Records `model` as the fleet's.
    pub async fn set_fleet_model(&self, model: &str) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        self.shared_call(|| self.shared.set_raw(MODEL_KEY, model.as_bytes())).await
    }

    /// Stores a handler pushed here, `bytes` with `sha256`, for the fleet,
    /// and announces it.
    pub async fn share_handler(&self, bytes: &[u8], sha256: &str) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        self.shared_call(|| self.shared.set_raw(HANDLER_KEY, bytes)).await?;
        let event = FleetEvent::Handler { origin: self.replica.clone(), sha256: sha256.to_string() };
        self.publish(&event).await
    }

    /// The handler the fleet was last given, if any.
    pub async fn fleet_handler(&self) -> Result<Option<Vec<u8>>, CacheError> {
        if !self.shares() {
            return Ok(None);
        }
        self.shared_call(|| self.shared.get_raw(HANDLER_KEY)).await
    }

    /// Stores a plugin pushed here for the fleet, and announces it.
    pub async fn share_plugin(&self, name: &str, bytes: &[u8], sha256: &str) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        let key = plugin_key(name);
        self.shared_call(|| self.shared.set_raw(&key, bytes)).await?;
        self.shared_call(|| self.shared.hash_set(PLUGINS_KEY, name, sha256)).await?;
        self.publish(&FleetEvent::Plugin { origin: self.replica.clone(), name: name.to_string() }).await
    }

    /// Withdraws a plugin unloaded here from the fleet, and announces it.
    pub async fn unshare_plugin(&self, name: &str) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        self.shared_call(|| self.shared.hash_delete(PLUGINS_KEY, name)).await?;
        let key = plugin_key(name);
        self.shared_call(|| self.shared.delete(&key)).await?;
        self.publish(&FleetEvent::PluginRemoved { origin: self.replica.clone(), name: name.to_string() })
            .await
    }

    /// The plugins the fleet was given: (name, bytes).
    pub async fn fleet_plugins(&self) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        if !self.shares() {
            return Ok(Vec::new());
        }
        let names = self.shared_call(|| self.shared.hash_all(PLUGINS_KEY)).await?;
        let mut plugins = Vec::with_capacity(names.len());
        for (name, _sha256) in names {
            if let Some(bytes) = self.fleet_plugin(&name).await? {
                plugins.push((name, bytes));
            }
        }
        Ok(plugins)
    }

    /// The plugin `name` as the fleet was given it, if it was.
    pub async fn fleet_plugin(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        if !self.shares() {
            return Ok(None);
        }
        let key = plugin_key(name);
        self.shared_call(|| self.shared.get_raw(&key)).await
    }

    /// Records what this replica serves (`report`, JSON).
    pub async fn report_replica(&self, report: &serde_json::Value) -> Result<(), CacheError> {
        if !self.shares() {
            return Ok(());
        }
        let text = report.to_string();
        self.shared_call(|| self.shared.hash_set(REPLICAS_KEY, &self.replica, &text)).await
    }

    /// What every replica last reported, by replica.
    pub async fn replicas(&self) -> Result<Vec<(String, serde_json::Value)>, CacheError> {
        if !self.shares() {
            return Ok(Vec::new());
        }
        let entries = self.shared_call(|| self.shared.hash_all(REPLICAS_KEY)).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(replica, text)| Some((replica, serde_json::from_str(&text).ok()?)))
            .collect())
    }

    /// Removes matching keys from this process's tier only (another
    /// replica cleared the shared one).
    pub fn clear_local(&self, prefix: &str, containing: Option<&str>) -> u64 {
        self.purges.purge_cleared(prefix, containing);
        self.memory.clear(|key| super::cleared_by(key, prefix, containing))
    }
}

/// Where a shared plugin's bytes live (the fleet's hash tag, so one slot).
pub fn plugin_key(name: &str) -> String {
    format!("{{llm-service}}:plugin:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_as_tagged_json() {
        let event =
            FleetEvent::Clear { origin: "r1".into(), prefix: "llm_response:".into(), containing: None };
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.contains("\"kind\":\"clear\""), "{text}");
        assert_eq!(serde_json::from_str::<FleetEvent>(&text).unwrap(), event);
        assert_eq!(event.origin(), "r1");
    }
}
