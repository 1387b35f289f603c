//! What the host counts, in the service's one Prometheus registry: requests
//! by endpoint and status, latency (a Prometheus histogram, plus an
//! HdrHistogram for the JSON percentiles), requests in flight, and what
//! handlers report per generation (cache hits and misses, tokens,
//! characters, failures by kind; at most [`MAX_CHARACTER_LABELS`] characters
//! get a label of their own, the rest count as `other`). Every capability registers its own
//! metrics in the same [`Registry`] (the cache its errors, the backend its
//! retries); one encoder renders them all. Recording never blocks on I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use prometheus::core::Collector;
use prometheus::{HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::registry::{BoundedLabels, counter, counter_vec, registered};

/// Upper bounds (seconds) of the latency histogram's buckets: from a cache
/// hit (well under a millisecond) to a long generation.
pub const LATENCY_BUCKETS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// `path` as the endpoint label of metrics and log lines: itself when it is
/// one of [`KNOWN_ENDPOINTS`], else `other`.
pub fn endpoint_label(path: &str) -> &'static str {
    KNOWN_ENDPOINTS.iter().copied().find(|known| *known == path).unwrap_or("other")
}

/// Endpoints counted under their own label; any other path is `other`, so a
/// scan of random URLs cannot grow the label set.
const KNOWN_ENDPOINTS: &[&str] = &[
    "/health",
    "/generate",
    "/generate/batch",
    "/metrics",
    "/metrics/prometheus",
    "/validate-model",
    "/models",
    "/model",
    "/cache/clear",
    "/livez",
    "/readyz",
    // The Ollama dialect.
    "/",
    "/api/generate",
    "/api/chat",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/version",
    "/api/embed",
    "/api/embeddings",
    // The OpenAI dialect.
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/embeddings",
    "/v1/responses",
    // The Anthropic dialect.
    "/v1/messages",
    "/v1/messages/count_tokens",
];
/// Characters that get a label of their own; the rest share `other`, so
/// clients inventing names cannot grow the series without bound.
pub const MAX_CHARACTER_LABELS: usize = 100;
/// Longest character label; a longer name counts as `other`.
const MAX_CHARACTER_LABEL_BYTES: usize = 128;
/// Latencies recorded by the percentile histogram: 1 µs to 1 hour.
const HDR_MAX_US: u64 = 3_600_000_000;

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("a valid metric name"))
}

/// The telemetry capability's own metrics.
pub struct Metrics {
    requests: IntCounterVec,
    latency: prometheus::Histogram,
    in_flight: IntGauge,
    percentiles: Mutex<Histogram<u64>>,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    tokens: IntCounter,
    errors: IntCounterVec,
    characters: IntCounterVec,
    /// The characters with a label of their own, first come first served.
    labelled: BoundedLabels,
    /// Set when rendered.
    pub(super) uptime_s: IntGauge,
    /// Set when rendered.
    pub(super) resident_memory_bytes: IntGauge,
}

/// A request counted as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl Metrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let latency =
            HistogramOpts::new("llm_service_request_duration_seconds", "Time to the response head.")
                .buckets(LATENCY_BUCKETS_S.to_vec());
        Self {
            requests: counter_vec(
                registry,
                "llm_service_requests_total",
                "Requests answered, by endpoint and status.",
                &["endpoint", "status"],
            ),
            latency: registered(registry, prometheus::Histogram::with_opts(latency).expect("valid buckets")),
            in_flight: gauge(registry, "llm_service_requests_in_flight", "Requests in the service now."),
            percentiles: Mutex::new(Histogram::new_with_bounds(1, HDR_MAX_US, 2).expect("valid bounds")),
            cache_hits: counter(
                registry,
                "llm_service_cache_hits_total",
                "Generations answered from the cache.",
            ),
            cache_misses: counter(
                registry,
                "llm_service_cache_misses_total",
                "Generations not answered from the cache.",
            ),
            tokens: counter(registry, "llm_service_tokens_generated_total", "Tokens the backend generated."),
            errors: counter_vec(
                registry,
                "llm_service_generation_errors_total",
                "Failed generations, by kind.",
                &["kind"],
            ),
            characters: counter_vec(
                registry,
                "llm_service_generations_total",
                "Successful generations, by character.",
                &["character"],
            ),
            labelled: BoundedLabels::new(MAX_CHARACTER_LABELS, MAX_CHARACTER_LABEL_BYTES),
            uptime_s: gauge(registry, "llm_service_uptime_seconds", "Seconds since start."),
            resident_memory_bytes: gauge(
                registry,
                "llm_service_resident_memory_bytes",
                "Resident memory of the process.",
            ),
        }
    }

    /// Counts a request as in flight while the guard lives.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(self)
    }

    /// Records a finished request (time to its response head).
    pub fn record_request(&self, path: &str, status: u16, latency: Duration) {
        let endpoint = endpoint_label(path);
        self.requests.with_label_values(&[endpoint, status.to_string().as_str()]).inc();
        self.latency.observe(latency.as_secs_f64());
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, HDR_MAX_US);
        let _ = self.percentiles.lock().unwrap_or_else(|poison| poison.into_inner()).record(micros);
    }

    /// Records what a handler reported about a generation.
    pub fn record_generation(
        &self,
        character: Option<&str>,
        cache_hit: bool,
        tokens: u64,
        error_kind: Option<&str>,
    ) {
        if let Some(kind) = error_kind {
            self.errors.with_label_values(&[kind]).inc();
            return;
        }
        if cache_hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
            // Only tokens the backend generated now; a hit generated none.
            self.tokens.inc_by(tokens);
        }
        let character = self.labelled.label(character.unwrap_or("default"));
        self.characters.with_label_values(&[character]).inc();
    }

    /// Requests by (endpoint, status).
    pub fn requests(&self) -> BTreeMap<(String, u16), u64> {
        by_labels(&self.requests)
            .into_iter()
            .map(|(labels, count)| {
                let status = labels.get(1).and_then(|status| status.parse().ok()).unwrap_or(0);
                ((labels.first().cloned().unwrap_or_default(), status), count)
            })
            .collect()
    }

    /// Requests by endpoint label, whatever their status.
    pub fn requests_by_endpoint(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for ((endpoint, _), count) in self.requests() {
            *counts.entry(endpoint).or_insert(0) += count;
        }
        counts
    }

    /// All requests counted.
    pub fn requests_total(&self) -> u64 {
        by_labels(&self.requests).values().sum()
    }

    /// Requests in the service now.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.in_flight.get().max(0)).unwrap_or(u32::MAX)
    }

    /// Mean, p50, p95 and p99 latency in seconds (0 before any request).
    pub fn latency_summary(&self) -> [f64; 4] {
        let histogram = self.percentiles.lock().unwrap_or_else(|poison| poison.into_inner());
        if histogram.is_empty() {
            return [0.0; 4];
        }
        let seconds = |micros: u64| micros as f64 / 1e6;
        [
            histogram.mean() / 1e6,
            seconds(histogram.value_at_quantile(0.50)),
            seconds(histogram.value_at_quantile(0.95)),
            seconds(histogram.value_at_quantile(0.99)),
        ]
    }

    /// The request latency histogram: each bucket's upper bound in seconds
    /// ([`LATENCY_BUCKETS_S`]) with the requests at or under it, then
    /// `None` (+Inf) with every request.
    pub fn latency_buckets(&self) -> Vec<(Option<f64>, u64)> {
        let mut buckets: Vec<(Option<f64>, u64)> = self
            .latency
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .flat_map(|metric| metric.get_histogram().get_bucket())
            .map(|bucket| (Some(bucket.upper_bound()), bucket.cumulative_count()))
            .collect();
        buckets.push((None, self.latency.get_sample_count()));
        buckets
    }

    /// (cache hits, cache misses, tokens generated).
    pub fn generation_totals(&self) -> (u64, u64, u64) {
        (self.cache_hits.get(), self.cache_misses.get(), self.tokens.get())
    }

    /// Failed generations by kind.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        first_label(&self.errors)
    }

    /// Generations by character.
    pub fn characters(&self) -> BTreeMap<String, u64> {
        first_label(&self.characters)
    }
}

/// Every series of `counters`: its label values, in order, and its count.
fn by_labels(counters: &IntCounterVec) -> BTreeMap<Vec<String>, u64> {
    counters
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| {
            let labels = metric.get_label().iter().map(|pair| pair.value().to_string()).collect();
            (labels, metric.get_counter().get_value() as u64)
        })
        .collect()
}

fn first_label(counters: &IntCounterVec) -> BTreeMap<String, u64> {
    by_labels(counters).into_iter().map(|(mut labels, count)| (labels.swap_remove(0), count)).collect()
}

/// Resident memory of this process (VmRSS from /proc; 0 where there is none).
pub fn resident_memory_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_share_one_label() {
        let metrics = Metrics::register(&Registry::new());
        metrics.record_request("/generate", 200, Duration::from_millis(3));
        metrics.record_request("/wp-admin", 404, Duration::from_millis(1));
        metrics.record_request("/.env", 404, Duration::from_millis(1));
        let requests = metrics.requests();
        assert_eq!(requests.get(&("other".to_string(), 404)), Some(&2));
        assert_eq!(metrics.requests_total(), 3);
    }

    #[test]
    fn characters_past_the_bound_share_one_label() {
        let metrics = Metrics::register(&Registry::new());
        for index in 0..MAX_CHARACTER_LABELS + 50 {
            metrics.record_generation(Some(&format!("character-{index}")), true, 0, None);
        }
        metrics.record_generation(Some(&"x".repeat(500)), true, 0, None);
        metrics.record_generation(Some("character-0"), true, 0, None);
        let characters = metrics.characters();
        assert_eq!(characters.len(), MAX_CHARACTER_LABELS + 1, "the first hundred and other");
        assert_eq!(characters["other"], 51);
        assert_eq!(characters["character-0"], 2, "a labelled character keeps its label");
    }

    #[test]
    fn the_rendered_histogram_is_cumulative() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry);
        metrics.record_request("/health", 200, Duration::from_micros(300));
        metrics.record_request("/health", 200, Duration::from_millis(30));
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains("llm_service_request_duration_seconds_bucket{le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("llm_service_request_duration_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("llm_service_request_duration_seconds_count 2"), "{text}");
    }
}
