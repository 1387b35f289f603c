//! The component runtime: one wasmtime [`Engine`](wasmtime::Engine) with the
//! pooling allocator and epoch interruption ([`engine`]), the per-request
//! store state ([`state`]) and the loaded handler ([`handler`]) that turns an
//! HTTP request into an instance (fresh, or kept from the connection's
//! previous request, see [`reuse`]) and its response.

pub mod compiled;
pub mod engine;
pub mod handler;
pub mod installer;
pub mod reuse;
pub mod state;
pub mod versions;
