//! Host bindings for the `llm-service:host` WIT package, generated once.
//! The WASI interfaces map onto wasmtime-wasi's and wasmtime-wasi-http's own
//! bindings, so only the service's interfaces are generated here.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "llm-service:host/handler",
    require_store_data_send: true,
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi": wasmtime_wasi::p2::bindings,
    },
});
