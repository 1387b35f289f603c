//! The crate every llm-service component depends on.
//!
//! It owns the WIT bindings (generated here, once, from the repository's
//! `wit/` folder) and a small typed layer over `wasi:http`, so a handler is
//! a plain function from [`http::Request`] to [`http::Response`]:
//!
//! ```no_run
//! struct Hello;
//! impl llm_service_sdk::Handler for Hello {
//!     fn handle(request: llm_service_sdk::http::Request) -> llm_service_sdk::http::Reply {
//!         llm_service_sdk::http::Response::text(200, request.path()).into()
//!     }
//! }
//! llm_service_sdk::export_handler!(Hello);
//! ```
//!
//! Expected failures never panic here: a request that cannot be read is
//! answered 400, and a client that goes away mid-response ends the write.

pub mod http;
pub mod outbound;

/// Generated bindings for the `llm-service:host/handler` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "llm-service:host/handler",
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "llm_service_sdk::bindings",
    });
}

/// What only the host knows (the current model, ...).
pub use bindings::llm_service::host::runtime;

/// A handler component: answers one HTTP request.
///
/// Called once per request, on an instance that holds nothing from earlier
/// requests worth relying on: state that must last lives in the host.
pub trait Handler {
    /// Answers `request`. The body has already been read in full.
    fn handle(request: http::Request) -> http::Reply;
}

/// Exports a [`Handler`] implementation as the component's
/// `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        struct __LlmServiceIncomingHandler;

        impl $crate::bindings::exports::wasi::http::incoming_handler::Guest
            for __LlmServiceIncomingHandler
        {
            fn handle(
                request: $crate::bindings::wasi::http::types::IncomingRequest,
                response_out: $crate::bindings::wasi::http::types::ResponseOutparam,
            ) {
                $crate::http::serve::<$handler>(request, response_out)
            }
        }

        $crate::bindings::export!(__LlmServiceIncomingHandler with_types_in $crate::bindings);
    };
}
