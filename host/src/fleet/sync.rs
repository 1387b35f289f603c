//! Keeps a replica in step with the others that share its store (KeyDB,
//! Redis or a Redis Cluster): it starts on the fleet's current model and
//! handler, then reads the event stream every [`POLL_EVERY`] from where it
//! left off, also after the store was unreachable, and applies what other
//! replicas did:
//! - a model switch, so every replica's /health says the same model within
//!   a second;
//! - a handler pushed through an admin API, installed here through this
//!   replica's own checks once its seal verifies ([`super::seal`]; a
//!   component this replica refuses is logged and the replica keeps its
//!   version, which `GET /components` then shows);
//! - a plugin pushed or unloaded through an admin API, likewise;
//! - a cache clear, so no replica keeps serving a cleared answer from its
//!   process tier;
//! - a client key made, changed or revoked, so every replica admits and
//!   refuses the same keys within a second.
//!
//! Every [`REPORT_EVERY`] it records what it serves, for `GET /components`,
//! adds what its keys used to the fleet's totals, and reads the keys again
//! (so a missed event, or one during an outage, is made up for).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Fleet;
use super::events::FleetEvent;
use super::seal::FleetSeal;
use crate::caps::cache::ResponseCache;
use crate::caps::plugins::PromptPlugins;
use crate::caps::telemetry::Telemetry;
use crate::guest::compiled::sha256_hex;
use crate::keys::ClientKeys;
use crate::runtime::installer::HandlerInstaller;

/// How often the stream is read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// How often a replica records what it serves.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// The running sync; stops when dropped.
pub struct FleetSync(tokio::task::JoinHandle<()>);

impl Drop for FleetSync {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a replica follows the fleet with.
#[derive(Clone)]
pub struct Follower {
    /// The fleet.
    pub fleet: Fleet,
    /// The response cache, whose process tier follows the fleet's clears.
    pub cache: Arc<ResponseCache>,
    /// The current model.
    pub telemetry: Telemetry,
    /// Installs handlers through this replica's checks.
    pub installer: Arc<HandlerInstaller>,
    /// The prompt plugins, loaded through this replica's checks.
    pub plugins: Arc<PromptPlugins>,
    /// Opens what the store holds; `None`, components are not taken from it.
    pub seal: Option<Arc<FleetSeal>>,
    /// The last sealed value refused (its sha256), so a flood of forged
    /// events logs once per value.
    pub refused: Arc<std::sync::Mutex<Option<String>>>,
    /// The client keys.
    pub keys: Arc<ClientKeys>,
}

/// Starts following the fleet.
pub fn start(fleet: Follower) -> FleetSync {
    if fleet.seal.is_none() {
        tracing::warn!(
            cap = "fleet",
            "handlers and plugins are not shared through the store: FLEET_SIGNING_KEY_FILE is not set (models and clears still are)"
        );
    }
    FleetSync(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<String> = None;
        let mut last_report: Option<Instant> = None;
        loop {
            ticks.tick().await;
            if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                last_report = Some(Instant::now());
                fleet.report().await;
                fleet.keys.add_use().await;
                fleet.keys.reload().await;
            }
            let Some(after) = last.clone() else {
                last = fleet.join().await;
                continue;
            };
            // An unreachable store is logged by its gate; try again next tick.
            let Ok(events) = fleet.fleet.events_after(&after).await else { continue };
            for (id, event) in events {
                last = Some(id);
                if event.origin() != fleet.fleet.replica() {
                    fleet.apply(event).await;
                }
            }
        }
    }))
}

impl Follower {
    /// The fleet's model and handler, and where its stream ends now, once
    /// the store answers.
    async fn join(&self) -> Option<String> {
        let model = self.fleet.model().await.ok()?;
        let handler = self.fleet.handler().await.ok()?;
        let plugins = self.fleet.plugins().await.ok()?;
        let last = self.fleet.last_event_id().await.ok()?;
        if let Some(model) = model
            && *self.telemetry.current_model() != *model
        {
            self.telemetry.adopt_model(&model);
        }
        if let Some((origin, bytes)) = handler.and_then(|sealed| self.open(&sealed)) {
            self.install(bytes, &format!("the fleet's handler at start, pushed to replica {origin}")).await;
        }
        for (name, sealed) in plugins {
            if let Some((origin, bytes)) = self.open(&sealed) {
                self.load_plugin(
                    &name,
                    bytes,
                    &format!("the fleet's plugin at start, pushed to replica {origin}"),
                )
                .await;
            }
        }
        Some(last)
    }

    async fn apply(&self, event: FleetEvent) {
        match event {
            FleetEvent::Model { origin, model } => {
                tracing::info!(cap = "fleet", %origin, %model, "another replica switched the model");
                self.telemetry.adopt_model(&model);
            }
            // Where a component came from is what its verified seal says,
            // not what the event claims.
            FleetEvent::Handler { sha256, .. } => {
                if let Ok(Some(sealed)) = self.fleet.handler().await
                    && let Some((origin, bytes)) = self.open(&sealed)
                {
                    tracing::info!(cap = "fleet", %origin, %sha256, "another replica was given a handler");
                    self.install(bytes, &format!("pushed to replica {origin}")).await;
                }
            }
            FleetEvent::Plugin { name, .. } => {
                if let Ok(Some(sealed)) = self.fleet.plugin(&name).await
                    && let Some((origin, bytes)) = self.open(&sealed)
                {
                    self.load_plugin(&name, bytes, &format!("pushed to replica {origin}")).await;
                }
            }
            FleetEvent::PluginRemoved { origin, name } => {
                if self.plugins.remove(&name).is_some() {
                    tracing::info!(cap = "fleet", %origin, plugin = %name, "another replica unloaded a plugin");
                }
            }
            FleetEvent::Keys { origin } => {
                tracing::debug!(cap = "fleet", %origin, "another replica changed a client key");
                self.keys.reload().await;
            }
            FleetEvent::Clear { origin, prefix, containing } => {
                let removed = self.cache.clear_here(&prefix, containing.as_deref());
                tracing::info!(cap = "fleet", %origin, removed, "another replica cleared the cache");
            }
        }
    }

    /// The replica a sealed value from the store was pushed to, and its
    /// bytes, if this replica has the key and the seal verifies; a refusal
    /// is logged once per value.
    fn open(&self, sealed: &[u8]) -> Option<(String, Vec<u8>)> {
        let seal = self.seal.as_ref()?;
        match seal.open(sealed) {
            Ok(opened) => Some(opened),
            Err(why) => {
                let sha256 = sha256_hex(sealed);
                let mut refused = self.refused.lock().unwrap_or_else(|poison| poison.into_inner());
                if refused.as_deref() != Some(sha256.as_str()) {
                    tracing::warn!(cap = "fleet", %sha256, reason = %why, "refused a component from the store: not installed");
                    *refused = Some(sha256);
                }
                None
            }
        }
    }

    /// Installs `bytes` unless this replica already serves them.
    async fn install(&self, bytes: Vec<u8>, source: &str) {
        let sha256 = sha256_hex(&bytes);
        if self.installer.versions().current().component.sha256() == sha256 {
            return;
        }
        if let Err(error) = self.installer.push(Bytes::from(bytes), &format!("fleet: {source}")).await {
            tracing::warn!(cap = "fleet", %sha256, %error, "refused the fleet's handler; this replica keeps its version");
        }
    }

    /// Loads the plugin `name` from `bytes` unless it is loaded already.
    async fn load_plugin(&self, name: &str, bytes: Vec<u8>, source: &str) {
        let sha256 = sha256_hex(&bytes);
        if self.plugins.list().iter().any(|plugin| plugin.sha256() == sha256) {
            return;
        }
        if let Err(error) = self.plugins.push(Bytes::from(bytes), &format!("fleet: {source}")).await {
            tracing::warn!(cap = "fleet", plugin = %name, %error, "refused the fleet's plugin");
        }
    }

    /// Records what this replica serves.
    async fn report(&self) {
        let current = self.installer.versions().current();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or_default();
        let report = serde_json::json!({
            "handler_sha256": current.component.sha256(),
            "handler_version": current.number,
            "model": &*self.telemetry.current_model(),
            "at_ms": now_ms,
        });
        let _ = self.fleet.report_replica(&report).await;
    }
}
