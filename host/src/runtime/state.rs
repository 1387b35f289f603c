//! The data of one request's [`Store`](wasmtime::Store): WASI contexts, the
//! resource table and handles to the host's capabilities.
//!
//! Isolation: a guest sees no host files, no host environment, no sockets,
//! no stdin; its stdout/stderr go to a small in-memory buffer that is logged
//! when the guest fails. Outbound HTTP is denied until the backend capability
//! gives it an allowlist.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::caps::runtime::ServiceRuntime;

/// Guest output kept per request: enough for a panic message.
const GUEST_OUTPUT_CAPACITY: usize = 4096;

/// Per-request store data.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: DenyOutbound,
    table: ResourceTable,
    output: MemoryOutputPipe,
    /// `llm-service:host/runtime`.
    pub runtime: ServiceRuntime,
}

impl RequestState {
    /// A fresh, isolated state.
    pub fn new(runtime: ServiceRuntime) -> Self {
        let output = MemoryOutputPipe::new(GUEST_OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder().stdout(output.clone()).stderr(output.clone()).build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: DenyOutbound,
            table: ResourceTable::new(),
            output,
            runtime,
        }
    }

    /// What the guest wrote to stdout and stderr (a panic message, say).
    pub fn guest_output(&self) -> String {
        String::from_utf8_lossy(&self.output.contents()).trim().to_string()
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

/// Outbound HTTP policy with an empty allowlist: every request is denied.
struct DenyOutbound;

impl WasiHttpHooks for DenyOutbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        tracing::warn!(cap = "outbound", uri = %request.uri(), "outbound request denied: no backend allowlist");
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}
