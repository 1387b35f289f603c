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
        "llm-service:host/cache.lookup": async | trappable,
        "llm-service:host/cache.[method]lead.publish": trappable,
        "llm-service:host/cache.[method]lead.land": async | trappable,
        "llm-service:host/cache.[method]lead.crash": trappable,
        "llm-service:host/cache.[method]lead.followers": trappable,
        "llm-service:host/cache.[method]follow.next": async | trappable,
        "llm-service:host/plugins.serving": trappable,
        "llm-service:host/plugins.[method]applied-plugin.transform": async | trappable,
        "llm-service:host/plugins.transform": async | trappable,
        "llm-service:host/plugins.[method]applied-plugin.name": trappable,
        "llm-service:host/plugins.[method]applied-plugin.sha256": trappable,
        "llm-service:host/plugins.[method]applied-plugin.post-process": async | trappable,
    },
    with: {
        "llm-service:host/cache.flight": crate::caps::cache::Flight,
        "llm-service:host/cache.lead": crate::caps::cache::Lead,
        "llm-service:host/cache.follow": crate::caps::cache::Follow,
        "llm-service:host/plugins.applied-plugin": crate::caps::plugins::AppliedPlugin,
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi": wasmtime_wasi::p2::bindings,
    },
});

/// The `prompt-plugin` world, as the host calls it; its types are the
/// handler world's `prompt-types`, so values pass between them unconverted.
pub mod plugin {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "llm-service:host/prompt-plugin",
        exports: { default: async },
        with: {
            "llm-service:host/prompt-types": crate::bindings::llm_service::host::prompt_types,
        },
    });
}
