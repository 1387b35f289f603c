//! GET /metrics: the seed's JSON plus percentiles, retries, errors, tokens,
//! requests in flight and counts per character. With `Accept: text/plain`,
//! or at /metrics/prometheus, the host's Prometheus text instead.

use llm_service_sdk::bindings::llm_service::host::cache;
use llm_service_sdk::bindings::llm_service::host::runtime::NamedCount;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde_json::{Map, Value, json};

use crate::health::{backend_word, cache_word};

/// The Prometheus text format's content type.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// GET /metrics.
pub fn get(request: &Request) -> Reply {
    let wants_text = request.header("accept").is_some_and(|accept| accept.contains("text/plain"));
    if wants_text {
        return prometheus(request);
    }
    let stats = runtime::stats();
    let generations = stats.cache_hits + stats.cache_misses;
    let hit_rate = if generations == 0 { 0.0 } else { stats.cache_hits as f64 / generations as f64 };
    let body = json!({
        "requests_total": stats.requests_total,
        "cache_hit_rate": (hit_rate * 1000.0).round() / 1000.0,
        "average_response_time": stats.latency_mean_s,
        "ollama_status": ollama_word(runtime::backend_status()),
        "memory_usage": memory(stats.resident_memory_bytes),
        "uptime": uptime(stats.uptime_s),
        "latency_seconds": {"p50": stats.latency_p50_s, "p95": stats.latency_p95_s, "p99": stats.latency_p99_s},
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.cache_misses,
        "cache_status": cache_word(cache::status()),
        "backend_retries": stats.backend_retries,
        "errors": counts(&stats.errors),
        "tokens_generated_total": stats.tokens_generated,
        "requests_in_flight": stats.requests_in_flight,
        "characters": counts(&stats.characters),
        "model": runtime::current_model(),
    });
    Response::json(200, &body).into()
}

/// GET /metrics/prometheus.
pub fn prometheus(_request: &Request) -> Reply {
    Response::new(200, PROMETHEUS_CONTENT_TYPE, runtime::prometheus().into_bytes()).into()
}

/// The seed says "healthy" for a backend that answers.
fn ollama_word(status: runtime::DependencyStatus) -> &'static str {
    match status {
        runtime::DependencyStatus::Up => "healthy",
        runtime::DependencyStatus::Down => "unhealthy",
        other => backend_word(other),
    }
}

fn counts(named: &[NamedCount]) -> Value {
    Value::Object(named.iter().map(|entry| (entry.name.clone(), json!(entry.count))).collect::<Map<_, _>>())
}

/// Bytes as the seed writes them: "2.3GB", "180.4MB".
pub fn memory(bytes: u64) -> String {
    let bytes = bytes as f64;
    if bytes >= 1e9 { format!("{:.1}GB", bytes / 1e9) } else { format!("{:.1}MB", bytes / 1e6) }
}

/// Seconds as the seed writes them: "24h 15m 30s".
fn uptime(seconds: u64) -> String {
    format!("{}h {}m {}s", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_the_seed() {
        assert_eq!(memory(2_300_000_000), "2.3GB");
        assert_eq!(memory(180_400_000), "180.4MB");
        assert_eq!(uptime(24 * 3600 + 15 * 60 + 30), "24h 15m 30s");
    }
}
