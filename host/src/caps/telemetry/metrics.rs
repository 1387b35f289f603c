//! What the host counts: requests by endpoint and status, latency (a
//! Prometheus histogram plus an HdrHistogram for percentiles), requests in
//! flight, and what handlers report per generation (cache hits and misses,
//! tokens, characters, failures by kind). Recording never blocks on I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds (seconds) of the latency histogram's buckets: from a cache
/// hit (well under a millisecond) to a long generation.
pub const LATENCY_BUCKETS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
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
];
/// Latencies recorded by the percentile histogram: 1 µs to 1 hour.
const HDR_MAX_US: u64 = 3_600_000_000;

/// The service's counters.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    in_flight: AtomicI64,
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
    percentiles: Mutex<Histogram<u64>>,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    tokens: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    characters: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            in_flight: AtomicI64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            percentiles: Mutex::new(Histogram::new_with_bounds(1, HDR_MAX_US, 2).expect("valid bounds")),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            errors: Mutex::default(),
            characters: Mutex::default(),
        }
    }
}

/// A request counted as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Metrics {
    /// Counts a request as in flight while the guard lives.
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records a finished request (time to its response head).
    pub fn record_request(&self, path: &str, status: u16, latency: Duration) {
        let endpoint = KNOWN_ENDPOINTS.iter().copied().find(|known| *known == path).unwrap_or("other");
        *lock(&self.requests).entry((endpoint, status)).or_default() += 1;
        let seconds = latency.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS_S.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, HDR_MAX_US);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let _ = lock(&self.percentiles).record(micros);
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
            *lock(&self.errors).entry(kind.to_string()).or_default() += 1;
            return;
        }
        if cache_hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.cache_misses.fetch_add(1, Ordering::Relaxed);
            // Only tokens the backend generated now; a hit generated none.
            self.tokens.fetch_add(tokens, Ordering::Relaxed);
        }
        let character = character.unwrap_or("default").to_string();
        *lock(&self.characters).entry(character).or_default() += 1;
    }

    /// Requests by (endpoint, status).
    pub fn requests(&self) -> BTreeMap<(&'static str, u16), u64> {
        lock(&self.requests).clone()
    }

    /// All requests counted.
    pub fn requests_total(&self) -> u64 {
        lock(&self.requests).values().sum()
    }

    /// Requests in the service now.
    pub fn in_flight(&self) -> u32 {
        u32::try_from(self.in_flight.load(Ordering::Relaxed).max(0)).unwrap_or(u32::MAX)
    }

    /// Cumulative bucket counts, their sum (seconds) and count.
    pub fn latency_histogram(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let buckets = LATENCY_BUCKETS_S
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| (*bound, count.load(Ordering::Relaxed)))
            .collect();
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, sum, self.latency_count.load(Ordering::Relaxed))
    }

    /// Mean, p50, p95 and p99 latency in seconds (0 before any request).
    pub fn latency_summary(&self) -> [f64; 4] {
        let histogram = lock(&self.percentiles);
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

    /// (cache hits, cache misses, tokens generated).
    pub fn generation_totals(&self) -> (u64, u64, u64) {
        (
            self.cache_hits.load(Ordering::Relaxed),
            self.cache_misses.load(Ordering::Relaxed),
            self.tokens.load(Ordering::Relaxed),
        )
    }

    /// Failed generations by kind.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Generations by character.
    pub fn characters(&self) -> BTreeMap<String, u64> {
        lock(&self.characters).clone()
    }
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
        let metrics = Metrics::default();
        metrics.record_request("/generate", 200, Duration::from_millis(3));
        metrics.record_request("/wp-admin", 404, Duration::from_millis(1));
        metrics.record_request("/.env", 404, Duration::from_millis(1));
        let requests = metrics.requests();
        assert_eq!(requests.get(&("other", 404)), Some(&2));
        assert_eq!(metrics.requests_total(), 3);
    }

    #[test]
    fn buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record_request("/health", 200, Duration::from_micros(300));
        metrics.record_request("/health", 200, Duration::from_millis(30));
        let (buckets, _, count) = metrics.latency_histogram();
        assert_eq!(count, 2);
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last().unwrap().1, 2);
    }
}
