//! The service's one Prometheus registry: every capability registers its
//! own metrics in it at start-up (the telemetry capability renders them
//! all), through these helpers. A leaf module, so capabilities reach it
//! without importing each other.

use prometheus::core::Collector;
use prometheus::{IntCounter, Registry};

/// Registers `metric` in `registry`. The names are the service's own, so a
/// clash is a bug the first test that starts the service finds.
pub fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

/// A counter `name` with `help`, registered in `registry`.
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help).expect("a valid metric name"))
}
