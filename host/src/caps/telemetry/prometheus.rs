//! The host's measurements in the Prometheus text exposition format 0.0.4,
//! named `llm_service_<what>_{total,seconds,...}`. Labels hold endpoints,
//! statuses, error kinds and characters; never keys, URLs or prompts.

use std::fmt::Write;

use super::Telemetry;

/// Renders every metric.
pub fn render(runtime: &Telemetry) -> String {
    let metrics = runtime.metrics();
    let mut out = String::new();
    let stats = runtime.stats();

    header(&mut out, "llm_service_requests_total", "counter", "Requests answered, by endpoint and status.");
    for ((endpoint, status), count) in metrics.requests() {
        let _ = writeln!(
            out,
            "llm_service_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
        );
    }

    header(&mut out, "llm_service_request_duration_seconds", "histogram", "Time to the response head.");
    let (buckets, sum, count) = metrics.latency_histogram();
    for (bound, cumulative) in buckets {
        let _ = writeln!(out, "llm_service_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "llm_service_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "llm_service_request_duration_seconds_sum {sum}");
    let _ = writeln!(out, "llm_service_request_duration_seconds_count {count}");

    let simple = [
        (
            "llm_service_requests_in_flight",
            "gauge",
            "Requests in the service now.",
            stats.requests_in_flight as f64,
        ),
        (
            "llm_service_cache_hits_total",
            "counter",
            "Generations answered from the cache.",
            stats.cache_hits as f64,
        ),
        (
            "llm_service_cache_misses_total",
            "counter",
            "Generations not answered from the cache.",
            stats.cache_misses as f64,
        ),
        (
            "llm_service_cache_errors_total",
            "counter",
            "Failed calls to the shared cache.",
            runtime.cache_errors() as f64,
        ),
        (
            "llm_service_backend_retries_total",
            "counter",
            "Backend requests retried.",
            stats.backend_retries as f64,
        ),
        (
            "llm_service_tokens_generated_total",
            "counter",
            "Tokens the backend generated.",
            stats.tokens_generated as f64,
        ),
        ("llm_service_uptime_seconds", "gauge", "Seconds since start.", stats.uptime_s as f64),
        (
            "llm_service_resident_memory_bytes",
            "gauge",
            "Resident memory of the process.",
            stats.resident_memory_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in simple {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }

    header(&mut out, "llm_service_generation_errors_total", "counter", "Failed generations, by kind.");
    for (kind, count) in metrics.errors() {
        let _ = writeln!(out, "llm_service_generation_errors_total{{kind=\"{}\"}} {count}", escape(&kind));
    }
    header(&mut out, "llm_service_generations_total", "counter", "Successful generations, by character.");
    for (character, count) in metrics.characters() {
        let _ =
            writeln!(out, "llm_service_generations_total{{character=\"{}\"}} {count}", escape(&character));
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
