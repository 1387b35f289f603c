//! What replicas sharing a store tell each other, through it: a stream of
//! events (a model switch, a cache clear, a component pushed) that each
//! replica reads from where it left off, and the keys the fleet's state
//! lives under. Every key carries the `{llm-service}` hash tag, so a Redis
//! Cluster keeps them in one slot.
//!
//! Reading is polling (`XREAD` without `BLOCK`): a blocking read would hold
//! up the multiplexed connection every cache call shares.

use serde::{Deserialize, Serialize};

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
    /// [`super::keys::KEYS_KEY`]).
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
