//! The component runtime: one wasmtime [`Engine`](wasmtime::Engine) with the
//! pooling allocator and epoch interruption ([`engine`]), the per-request
//! store state ([`state`]) and the loaded handler ([`handler`]) that turns an
//! HTTP request into a fresh, isolated instance and its response.

pub mod compiled;
pub mod engine;
pub mod handler;
pub mod installer;
pub mod state;
pub mod versions;
