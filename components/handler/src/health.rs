//! GET /health: the seed's shape, from the host's latest background checks
//! (it never waits on the backend). "healthy"; "degraded" (cache down,
//! backend slow, a backend node down while another serves, or the sampled
//! quality checks failing) with 200; "unhealthy" (backend down: with
//! several nodes, all of them) with 503. Beyond the seed's fields, only
//! while in use: `quality` (`pending`, `ok`, `degraded`, with
//! `quality_failure` when degraded) when QUALITY_CHECK_INTERVAL is set,
//! `model_split` while one is set, and `backends` (each node's status,
//! models, loaded models, in flight and slots) with several backend nodes.

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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backends: Vec<serde_json::Value>,
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
    let nodes = runtime::backend_nodes();
    // Some node down while another still serves: degraded, not unhealthy.
    let degraded = quality.failing_check.is_some() || nodes.iter().any(|node| node.status == "down");
    let (status, code) = match (backend, cache) {
        (DependencyStatus::Down, _) => ("unhealthy", 503),
        (DependencyStatus::Slow, _) | (_, CacheStatus::Disconnected) => ("degraded", 200),
        _ if degraded => ("degraded", 200),
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
        backends: nodes
            .into_iter()
            .map(|node| {
                serde_json::json!({
                    "name": node.name, "url": node.url, "status": node.status, "models": node.models,
                    "loaded": node.loaded, "in_flight": node.in_flight, "slots": node.slots,
                })
            })
            .collect(),
    };
    Response::json(code, &health).into()
}
