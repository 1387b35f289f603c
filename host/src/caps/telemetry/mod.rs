//! The telemetry capability (the WIT interface `llm-service:host/runtime`,
//! a name 0.1 keeps): what only the host knows about the service (counters,
//! latency, background checks, the current model, the handler's settings),
//! and what handlers report about each generation.
//!
//! The state (current model, counters, background check results) lives in
//! the host and outlives every instance and swap; each request's store holds
//! a cheap handle plus its request id. Reads never fail and never do I/O.

pub mod checks;
pub mod hit_summary;
mod host;
pub mod metrics;
pub mod prometheus;
pub mod rollout_metrics;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};

use self::checks::HealthChecks;
use self::hit_summary::HitSummary;
use self::metrics::Metrics;
use self::rollout_metrics::RolloutMetrics;
use crate::bindings::llm_service::host::runtime::{self, HandlerSettings, NamedCount, ServiceStats as Stats};
use crate::caps::backend::Backend;
use crate::purge::{PurgeCause, SharedPurges};
use crate::rollout::model_split::{ModelSplit, SplitState};
use crate::rollout::verdict::QualityState;
use crate::routing::RoutingKey;
use crate::scope::RequestScope;
use crate::traces::handler_span::HandlerSpan;

/// Told when this replica's operator switches the model, so the replicas
/// sharing its store follow ([`crate::fleet`]).
pub trait ModelSwitches: Send + Sync {
    /// The model is now `model`.
    fn switched(&self, model: &str);
}

/// Service-wide facts, shared by every request.
#[derive(Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

struct Shared {
    current_model: RwLock<Arc<str>>,
    metrics: Metrics,
    rollout_metrics: RolloutMetrics,
    model_split: SplitState,
    quality: QualityState,
    checks: Arc<HealthChecks>,
    started: Instant,
    backend: Arc<Backend>,
    /// Told of every switch made here, if the replica has a fleet.
    model_switches: Option<Arc<dyn ModelSwitches>>,
    handler_settings: HandlerSettings,
    registry: ::prometheus::Registry,
    hit_summary: HitSummary,
    /// Told of every model or split change: requests naming no model change answer.
    purges: SharedPurges,
}

impl Telemetry {
    /// Starts with `model` as the current model and `split` as the model
    /// split; handlers get `handler_settings`; `model_switches` is told of
    /// each switch made here. Its metrics join the others in `registry`.
    pub fn new(
        model: &str,
        split: Option<ModelSplit>,
        backend: Arc<Backend>,
        model_switches: Option<Arc<dyn ModelSwitches>>,
        handler_settings: HandlerSettings,
        registry: &::prometheus::Registry,
        purges: SharedPurges,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                current_model: RwLock::new(Arc::from(model)),
                metrics: Metrics::register(registry),
                rollout_metrics: RolloutMetrics::register(registry),
                model_split: SplitState::new(split),
                quality: QualityState::default(),
                checks: Arc::default(),
                started: Instant::now(),
                backend,
                model_switches,
                handler_settings,
                registry: registry.clone(),
                hit_summary: HitSummary::default(),
                purges,
            }),
        }
    }

    /// The model generations use when a request names none and no model
    /// split is set.
    pub fn current_model(&self) -> Arc<str> {
        // A poisoned lock still holds a valid model name.
        self.shared.current_model.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    /// Switches the current model; returns the previous one. A model split
    /// ends: the operator asked for one model. Replicas sharing the store
    /// follow (see [`crate::fleet`]).
    pub fn set_current_model(&self, model: &str) -> Arc<str> {
        let previous = self.adopt_model(model);
        if let Some(switches) = &self.shared.model_switches {
            switches.switched(model);
        }
        previous
    }

    /// Switches the current model here only (another replica switched the
    /// fleet's); returns the previous one.
    pub fn adopt_model(&self, model: &str) -> Arc<str> {
        if self.shared.model_split.get().is_some() {
            self.shared.model_split.set(None);
        }
        let mut current = self.shared.current_model.write().unwrap_or_else(|poison| poison.into_inner());
        let previous = std::mem::replace(&mut *current, Arc::from(model));
        drop(current);
        self.shared.purges.purge_all(PurgeCause::Model);
        tracing::info!(cap = "runtime", %previous, current = model, "current model switched");
        previous
    }

    /// The handler's settings, as validated at start-up.
    pub fn handler_settings(&self) -> &HandlerSettings {
        &self.shared.handler_settings
    }

    /// The registry every capability's metrics are in.
    pub fn registry(&self) -> &::prometheus::Registry {
        &self.shared.registry
    }

    /// Cache hits summed for the log.
    pub fn hit_summary(&self) -> &HitSummary {
        &self.shared.hit_summary
    }

    /// Time since start.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started.elapsed()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The backend (its nodes, when there are several).
    pub fn backend(&self) -> &Arc<Backend> {
        &self.shared.backend
    }

    /// Per-version and per-model counters.
    pub fn rollout_metrics(&self) -> &RolloutMetrics {
        &self.shared.rollout_metrics
    }

    /// The sampled quality checks' verdict.
    pub fn quality(&self) -> &QualityState {
        &self.shared.quality
    }

    /// The model split in force, if any.
    pub fn model_split(&self) -> &SplitState {
        &self.shared.model_split
    }

    /// Sets the model split (None ends it).
    pub fn set_model_split(&self, split: Option<ModelSplit>) {
        self.shared.model_split.set(split);
        self.shared.purges.purge_all(PurgeCause::Model);
    }

    /// The model for a generation of a request with `key` that names none:
    /// the split's pick, else the current model.
    pub fn model_for(&self, key: RoutingKey) -> Arc<str> {
        match self.shared.model_split.get() {
            Some(split) => Arc::from(split.pick(key)),
            None => self.current_model(),
        }
    }

    /// The background checks' results.
    pub fn checks(&self) -> &Arc<HealthChecks> {
        &self.shared.checks
    }

    /// Everything measured, for /metrics.
    pub fn stats(&self) -> Stats {
        let metrics = &self.shared.metrics;
        let [mean, p50, p95, p99] = metrics.latency_summary();
        let (cache_hits, cache_misses, tokens_generated) = metrics.generation_totals();
        let named = |counts: std::collections::BTreeMap<String, u64>| {
            counts.into_iter().map(|(name, count)| NamedCount { name, count }).collect()
        };
        Stats {
            uptime_s: self.shared.started.elapsed().as_secs(),
            resident_memory_bytes: metrics::resident_memory_bytes(),
            requests_total: metrics.requests_total(),
            requests_in_flight: metrics.in_flight(),
            latency_mean_s: mean,
            latency_p50_s: p50,
            latency_p95_s: p95,
            latency_p99_s: p99,
            cache_hits,
            cache_misses,
            backend_retries: self.shared.backend.client().retries_total(),
            tokens_generated,
            errors: named(metrics.errors()),
            characters: named(metrics.characters()),
        }
    }

    /// The per-request view for the request `scope` describes.
    pub fn for_request(&self, scope: RequestScope) -> RequestTelemetry {
        RequestTelemetry {
            service: self.clone(),
            request_id: scope.request_id,
            handler_version: scope.handler_version,
            endpoint: scope.endpoint,
            routing_key: scope.routing_key,
            served_by: scope.served_by,
            span: HandlerSpan::new(&scope.span),
            tenant: scope.tenant,
        }
    }

    /// The view for counting an edge replay of handler version
    /// `handler_version` for request `request_id` of `tenant` on
    /// `endpoint` (it calls no backend, so no node answered it).
    pub fn for_replay(
        &self,
        request_id: Arc<str>,
        handler_version: Arc<str>,
        endpoint: &'static str,
        routing_key: RoutingKey,
        tenant: Option<crate::keys::Admitted>,
    ) -> RequestTelemetry {
        RequestTelemetry {
            service: self.clone(),
            request_id,
            handler_version,
            endpoint,
            routing_key,
            served_by: Default::default(),
            // A replay's report goes on the request's own span.
            span: if crate::traces::exporting() {
                HandlerSpan::new(&tracing::Span::current())
            } else {
                HandlerSpan::default()
            },
            tenant,
        }
    }
}

/// One request's view: the service plus what its log lines name.
pub struct RequestTelemetry {
    service: Telemetry,
    request_id: Arc<str>,
    handler_version: Arc<str>,
    /// The route, as the metrics label it (each dialect its own).
    endpoint: &'static str,
    /// Picks its model in a model split.
    routing_key: RoutingKey,
    /// The backend node that answered (several nodes only).
    served_by: crate::caps::backend::ServedBy,
    /// Its generation span, when traced.
    span: HandlerSpan,
    /// Its tenant, by its client key (`None`: the default tenant).
    tenant: Option<crate::keys::Admitted>,
}

impl RequestTelemetry {
    /// Its generation span (every call a no-op when not traced).
    pub fn span(&self) -> &HandlerSpan {
        &self.span
    }

    /// Its generation span, for what the handler adds.
    pub fn span_mut(&mut self) -> &mut HandlerSpan {
        &mut self.span
    }

    /// Lets go of the span: the request is over, its instance may be kept.
    pub fn end_span(&mut self) {
        self.span = HandlerSpan::default();
    }
}

/// Adds the interface to `linker`; `get` finds the view in a store's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut RequestTelemetry,
) -> wasmtime::Result<()> {
    runtime::add_to_linker::<T, HasSelf<RequestTelemetry>>(linker, get)
}
