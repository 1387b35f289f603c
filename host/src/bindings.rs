//! Host bindings for the `llm-service:host` WIT package, generated once.
//! The WASI interfaces map onto wasmtime-wasi's and wasmtime-wasi-http's own
//! bindings, so only the service's interfaces are generated here.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "llm-service:host/handler",
    require_store_data_send: true,
    imports: {
        "llm-service:host/cache.get": async,
        "llm-service:host/cache.set": async,
        "llm-service:host/cache.delete": async,
        "llm-service:host/cache.clear": async,
        "llm-service:host/cache.join": async | trappable,
        "llm-service:host/cache.[method]flight.land": trappable,
        "llm-service:host/cache.[method]flight.crash": trappable,
    },
    with: {
        "llm-service:host/cache.flight": crate::caps::cache::Flight,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi": wasmtime_wasi::p2::bindings,
    },
});
