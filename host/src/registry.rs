//! The service's one Prometheus registry: every capability registers its
//! own metrics in it at start-up (the telemetry capability renders them
//! all), through these helpers. A leaf module, so capabilities reach it
//! without importing each other.

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

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

/// A counter `name` with `help` and `labels`, registered in `registry`.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric name"))
}

/// The label every value past a [`BoundedLabels`] bound shares.
pub const OTHER_LABEL: &str = "other";

/// A label whose values come from outside (characters, models, handler
/// versions): the first `max` distinct values, each at most `max_bytes`
/// long, get a series of their own; the rest share [`OTHER_LABEL`], so
/// clients inventing names cannot grow the series without bound.
#[derive(Debug)]
pub struct BoundedLabels {
    max: usize,
    max_bytes: usize,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl BoundedLabels {
    /// Room for `max` values of at most `max_bytes` each.
    pub fn new(max: usize, max_bytes: usize) -> Self {
        Self { max, max_bytes, seen: std::sync::Mutex::default() }
    }

    /// `value`'s own label while there is room (or it has one), else `other`.
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        if value.len() > self.max_bytes || value == OTHER_LABEL {
            return OTHER_LABEL;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|poison| poison.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() >= self.max {
            return OTHER_LABEL;
        }
        seen.insert(value.to_string());
        value
    }
}
