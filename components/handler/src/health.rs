//! GET /health: the seed's shape, from the host's latest background checks
//! (it never waits on the backend). "healthy"; "degraded" (cache down,
//! backend slow, or the sampled quality checks failing) with 200;
//! "unhealthy" (backend down) with 503. Beyond the seed's fields: `quality`
//! (`off`, `pending`, `ok`, `degraded`) with `quality_failure` when
//! degraded, and `model_split` while one is set.

use llm_service_sdk::bindings::llm_service::host::cache::{self, CacheStatus};
use llm_service_sdk::bindings::llm_service::host::runtime::DependencyStatus;
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde::Serialize;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
    ollama_status: &'static str,
    model: String,
    cache_status: &'static str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_split: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The seed's word for the backend's state.
pub fn backend_word(status: DependencyStatus) -> &'static str {
    match status {
        DependencyStatus::Unknown => "unknown",
        DependencyStatus::Up => "connected",
        DependencyStatus::Slow => "slow",
        DependencyStatus::Down => "disconnected",
    }
}

/// The seed's word for the cache's state.
pub fn cache_word(status: CacheStatus) -> &'static str {
    match status {
        CacheStatus::Connected => "connected",
        CacheStatus::InProcess => "in-process",
        CacheStatus::Disconnected => "disconnected",
    }
}

pub fn get(_request: &Request) -> Reply {
    let backend = runtime::backend_status();
    let cache = cache::status();
    let quality = runtime::quality();
    let quality_degraded = quality.failing_check.is_some();
    let (status, code) = match (backend, cache) {
        (DependencyStatus::Down, _) => ("unhealthy", 503),
        (DependencyStatus::Slow, _) | (_, CacheStatus::Disconnected) => ("degraded", 200),
        _ if quality_degraded => ("degraded", 200),
        _ => ("healthy", 200),
    };
    let split = runtime::model_split();
    let health = Health {
        status,
        service: "llm-service",
        ollama_status: backend_word(backend),
        model: runtime::current_model(),
        cache_status: cache_word(cache),
        timestamp: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        quality: (quality.state != "off").then_some(quality.state),
        quality_failure: quality.failing_check,
        model_split: (!split.is_empty())
            .then(|| split.into_iter().map(|weighted| (weighted.model, weighted.weight.into())).collect()),
    };
    Response::json(code, &health).into()
}
