//! What the admin API answers about the service, as JSON: handler versions,
//! plugins and the live counters the console charts. Only reads; nothing
//! here changes state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::caps::HostCapabilities;
use crate::caps::plugins::PromptPlugin;
use crate::caps::telemetry::rollout_metrics::RolloutMetrics;
use crate::runtime::canary::Canary;
use crate::runtime::versions::HandlerVersion;

fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
}

pub(super) fn pushed(version: &HandlerVersion) -> Value {
    let (compile_ms, cached) = version.component.compilation().report();
    json!({
        "version": version.number,
        "sha256": version.component.sha256(),
        "compile_ms": compile_ms,
        "compiled_from_cache": cached,
    })
}

/// A version, with the answers it gave (all, and 5xx) since start.
pub(super) fn describe(version: &HandlerVersion, metrics: &RolloutMetrics) -> Value {
    let (answers, server_errors) = metrics.answers(version.tag());
    json!({
        "version": version.number,
        "sha256": version.component.sha256(),
        "size": version.size,
        "loaded_at": rfc3339(version.loaded_at),
        "source": version.component.source_name(),
        "answers": answers,
        "server_errors": server_errors,
    })
}

/// The canary: its version, share, and both sides' windows.
pub(super) fn describe_canary(canary: &Canary, metrics: &RolloutMetrics) -> Value {
    let window = |(answers, error_rate, p99): (usize, f64, std::time::Duration)| json!({"answers": answers, "error_rate": error_rate, "p99_ms": p99.as_secs_f64() * 1000.0});
    let [stable, candidate] = canary.windows();
    let mut described = describe(&canary.version, metrics);
    described["percent"] = json!(canary.percent());
    described["window"] = json!({"stable": window(stable), "canary": window(candidate)});
    described
}

pub(super) fn describe_plugin(plugin: &PromptPlugin) -> Value {
    let (compile_ms, cached) = plugin.compilation.report();
    json!({
        "name": plugin.manifest().name,
        "characters": plugin.manifest().characters,
        "sha256": plugin.sha256(),
        "size": plugin.size,
        "loaded_at": rfc3339(plugin.loaded_at),
        "source": plugin.source,
        "compile_ms": compile_ms,
        "compiled_from_cache": cached,
    })
}

/// The counters behind the console's charts, as totals since start: a
/// client takes the difference of two reads for rates, hit ratios and
/// latency percentiles over the time between them.
pub(super) fn stats(capabilities: &HostCapabilities) -> Value {
    let telemetry = &capabilities.telemetry;
    let metrics = telemetry.metrics();
    let (cache_hits, cache_misses, tokens_generated) = metrics.generation_totals();
    let (backend_in_flight, backend_queued) = capabilities.backend.load();
    let latency: Vec<Value> = metrics
        .latency_buckets()
        .into_iter()
        .map(|(upper_bound_s, count)| json!({"le_s": upper_bound_s, "count": count}))
        .collect();
    json!({
        "uptime_s": telemetry.uptime().as_secs_f64(),
        "requests_total": metrics.requests_total(),
        "requests_in_flight": metrics.in_flight(),
        "generations_in_flight": backend_in_flight,
        "generations_queued": backend_queued,
        "cache_hits": cache_hits,
        "cache_misses": cache_misses,
        "tokens_generated": tokens_generated,
        "latency_buckets": latency,
        "requests_by_endpoint": metrics.requests_by_endpoint(),
    })
}

/// What each replica sharing the store last said it serves, with how long
/// ago (a replica silent for long has stopped); `null` if the store does
/// not answer.
pub(super) async fn replicas(fleet: &crate::fleet::Fleet) -> Value {
    let Ok(replicas) = fleet.replicas().await else { return Value::Null };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default();
    let described: Vec<Value> = replicas
        .into_iter()
        .map(|(replica, mut report)| {
            let at_ms = report["at_ms"].as_u64().unwrap_or_default();
            report["replica"] = json!(replica);
            report["this_replica"] = json!(replica == fleet.replica());
            report["seen_s_ago"] = json!(now_ms.saturating_sub(at_ms) / 1000);
            report
        })
        .collect();
    json!(described)
}
