//! Keeps a replica in step with the others that share its store (KeyDB,
//! Redis or a Redis Cluster): it starts on the fleet's current model, then
//! reads the event stream every [`POLL_EVERY`] from where it left off, also
//! after the store was unreachable, and applies what other replicas did: a
//! model switch (so every replica's /health says the same model within a
//! second) and a cache clear (so no replica keeps serving a cleared answer
//! from its process tier). Without a shared store there is nothing to do.

use std::sync::Arc;
use std::time::Duration;

use crate::caps::cache::ResponseCache;
use crate::caps::cache::events::FleetEvent;
use crate::caps::telemetry::Telemetry;

/// How often the stream is read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// The running sync; stops when dropped.
pub struct FleetSync(tokio::task::JoinHandle<()>);

impl Drop for FleetSync {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts following the fleet, if `cache` has a shared store.
pub fn start(cache: Arc<ResponseCache>, telemetry: Telemetry) -> Option<FleetSync> {
    if !cache.shares() {
        return None;
    }
    Some(FleetSync(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(POLL_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<String> = None;
        loop {
            ticks.tick().await;
            let Some(after) = last.clone() else {
                last = join(&cache, &telemetry).await;
                continue;
            };
            // An unreachable store is logged by the cache; try again next tick.
            let Ok(events) = cache.events_after(&after).await else { continue };
            for (id, event) in events {
                last = Some(id);
                if event.origin() != cache.replica() {
                    apply(&cache, &telemetry, event);
                }
            }
        }
    })))
}

/// The fleet's model and where its stream ends now, once the store answers.
async fn join(cache: &ResponseCache, telemetry: &Telemetry) -> Option<String> {
    let model = cache.fleet_model().await.ok()?;
    let last = cache.last_event_id().await.ok()?;
    if let Some(model) = model
        && *telemetry.current_model() != *model
    {
        telemetry.adopt_model(&model);
    }
    Some(last)
}

fn apply(cache: &ResponseCache, telemetry: &Telemetry, event: FleetEvent) {
    match event {
        FleetEvent::Model { origin, model } => {
            tracing::info!(cap = "fleet", %origin, %model, "another replica switched the model");
            telemetry.adopt_model(&model);
        }
        FleetEvent::Clear { origin, prefix, containing } => {
            let removed = cache.clear_local(&prefix, containing.as_deref());
            tracing::info!(cap = "fleet", %origin, removed, "another replica cleared the cache");
        }
    }
}
