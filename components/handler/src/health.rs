//! GET /health: the seed's shape. The backend and cache statuses are
//! "unknown" until the host offers background checks to read them from.

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
    let health = Health {
        status: "healthy",
        service: "llm-service",
        ollama_status: UNKNOWN,
        model: runtime::current_model(),
        cache_status: UNKNOWN,
        timestamp: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    Response::json(200, &health).into()
}
