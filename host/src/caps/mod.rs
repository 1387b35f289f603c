//! One module per WIT capability the host provides to components. Each has
//! the same shape: `mod.rs` (what it guarantees, its state, `add_to_linker`)
//! and `host.rs` (the generated `Host` trait, thin).

pub mod backend;
pub mod cache;
pub mod edge;
pub mod plugins;
pub mod telemetry;

use std::sync::Arc;

/// Everything a request's store gets from the host: cheap handles to the
/// shared state of each capability, built once at start-up.
#[derive(Clone)]
pub struct HostCapabilities {
    /// What only the host knows (`llm-service:host/runtime`).
    pub telemetry: telemetry::Telemetry,
    /// The response cache.
    pub cache: Arc<cache::ResponseCache>,
    /// Exact repeats answered in front of the handler.
    pub edge: Arc<edge::EdgeCache>,
    /// Outbound HTTP to the backend.
    pub backend: Arc<backend::Backend>,
    /// The loaded prompt plugins.
    pub plugins: Arc<plugins::PromptPlugins>,
    /// The component's environment (its configuration; see `config::GenerationConfig`).
    pub guest_environment: Arc<[(String, String)]>,
    /// COUNT_HOST_CALLS: count and log each request's calls into the host.
    pub count_host_calls: bool,
}
