//! The service's one registry in the Prometheus text exposition format
//! 0.0.4, named `llm_service_<what>_{total,seconds,...}`. Labels hold
//! endpoints, statuses, error kinds and characters; never keys, URLs or
//! prompts.

use super::Telemetry;
use super::metrics::resident_memory_bytes;

/// Renders every metric every capability registered.
pub fn render(telemetry: &Telemetry) -> String {
    let metrics = telemetry.metrics();
    metrics.uptime_s.set(i64::try_from(telemetry.uptime().as_secs()).unwrap_or(i64::MAX));
    metrics.resident_memory_bytes.set(i64::try_from(resident_memory_bytes()).unwrap_or(i64::MAX));
    prometheus::TextEncoder::new().encode_to_string(&telemetry.registry().gather()).unwrap_or_else(|error| {
        tracing::error!(cap = "telemetry", %error, "rendering metrics failed");
        String::new()
    })
}
