//! GET /health: the seed's shape. `cache_status` is the host's view of the
//! cache (from its last KeyDB call); a disconnected cache degrades the
//! service but it still answers (200). The backend status says "unknown"
//! until the host offers background checks to read it from.

use llm_service_sdk::bindings::llm_service::host::cache::{self, CacheStatus};
use llm_service_sdk::http::{Reply, Request, Response};
use llm_service_sdk::runtime;
use serde::Serialize;

/// Said of a dependency whose state the handler has no way to learn yet.
const UNKNOWN: &str = "unknown";

#[derive(Serialize)]
struct Health {
    status: &'static str,
    service: &'static str,
    ollama_status: &'static str,
    model: String,
    cache_status: &'static str,
    timestamp: String,
}

pub fn get(_request: &Request) -> Reply {
    let (status, cache_status) = match cache::status() {
        CacheStatus::Connected => ("healthy", "connected"),
        CacheStatus::InProcess => ("healthy", "in-process"),
        CacheStatus::Disconnected => ("degraded", "disconnected"),
    };
    let health = Health {
        status,
        service: "llm-service",
        ollama_status: UNKNOWN,
        model: runtime::current_model(),
        cache_status,
        timestamp: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    Response::json(200, &health).into()
}
