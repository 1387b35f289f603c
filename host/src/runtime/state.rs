//! The data of one request's [`Store`](wasmtime::Store): WASI contexts, the
//! resource table and handles to the host's capabilities.
//!
//! Isolation: a guest sees no host files, no sockets, no stdin, and of the
//! environment only its own configuration; its stdout/stderr go to a small
//! in-memory buffer that is logged when the guest fails. Outbound HTTP goes
//! through the backend capability and reaches only the configured backend;
//! prompt plugins are called through the plugins capability.

use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::caps::HostCapabilities;
use crate::caps::backend::BackendHooks;
use crate::caps::cache::{CacheView, LookupTrace, ResponseCache};
use crate::caps::edge::{EdgeCache, EdgeTicket, EdgeView};
use crate::caps::plugins::{PluginsView, PromptPlugins};
use crate::caps::telemetry::RequestTelemetry;
use crate::guest::call::GuestOutput;
use crate::scope::RequestScope;

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: BackendHooks,
    table: ResourceTable,
    output: GuestOutput,
    /// `llm-service:host/runtime`.
    pub telemetry: RequestTelemetry,
    cache: Arc<ResponseCache>,
    edge: Arc<EdgeCache>,
    edge_ticket: Option<EdgeTicket>,
    trace: LookupTrace,
    /// The tenant's cache namespace (`None`: the default one).
    namespace: Option<Arc<str>>,
    plugins: Arc<PromptPlugins>,
    deadline: Instant,
    /// Calls into the host this request made (COUNT_HOST_CALLS).
    pub host_calls: u32,
}

impl RequestState {
    /// A fresh, isolated state for a request that must end by `deadline`.
    pub fn new(capabilities: &HostCapabilities, scope: RequestScope) -> Self {
        let output = GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.pipe())
            .stderr(output.pipe())
            .envs(&capabilities.guest_environment)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: capabilities.backend.hooks(
                scope.deadline,
                scope.timeout,
                scope.routing_key,
                scope.served_by.clone(),
            ),
            table: ResourceTable::new(),
            output,
            cache: capabilities.cache.clone(),
            edge: capabilities.edge.clone(),
            edge_ticket: scope.edge,
            trace: scope.trace.clone(),
            namespace: scope.tenant.as_ref().map(|tenant| tenant.namespace.clone()),
            plugins: capabilities.plugins.clone(),
            deadline: scope.deadline,
            telemetry: capabilities.telemetry.for_request(scope),
            host_calls: 0,
        }
    }

    /// Points a kept instance's state at its next request: what is per
    /// request (its [`RequestScope`] and outbound budget) is renewed; the
    /// WASI context, the table and the output buffer stay with the instance.
    pub fn renew(&mut self, capabilities: &HostCapabilities, scope: RequestScope) {
        self.hooks = capabilities.backend.hooks(
            scope.deadline,
            scope.timeout,
            scope.routing_key,
            scope.served_by.clone(),
        );
        self.deadline = scope.deadline;
        self.edge_ticket = scope.edge;
        self.trace = scope.trace.clone();
        self.namespace = scope.tenant.as_ref().map(|tenant| tenant.namespace.clone());
        self.telemetry = capabilities.telemetry.for_request(scope);
        self.host_calls = 0;
    }

    /// What the cache functions see of this store.
    pub fn cache_view(&mut self) -> CacheView<'_> {
        CacheView {
            cache: &self.cache,
            table: &mut self.table,
            deadline: self.deadline,
            trace: &self.trace,
            span: self.telemetry.span().span(),
            namespace: self.namespace.as_deref(),
        }
    }

    /// What the edge functions see of this store.
    pub fn edge_view(&mut self) -> EdgeView<'_> {
        EdgeView { edge: &self.edge, ticket: self.edge_ticket, trace: &self.trace }
    }

    /// What the plugin functions see of this store.
    pub fn plugins_view(&mut self) -> PluginsView<'_> {
        PluginsView { plugins: &self.plugins, table: &mut self.table, deadline: self.deadline }
    }

    /// What the guest wrote to stdout and stderr (a panic message, say).
    pub fn guest_output(&self) -> String {
        self.output.text()
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}
