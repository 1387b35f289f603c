//! `llm-service:host/runtime`: what only the host knows about the service.
//!
//! The state lives in the host and outlives every instance and swap; each
//! request's store holds a cheap clone of the shared handle. Reads never
//! fail and never block on I/O.

mod host;

use std::sync::{Arc, RwLock};

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::llm_service::host::runtime;

/// Service-wide facts, shared by every request.
#[derive(Debug, Clone)]
pub struct ServiceRuntime {
    current_model: Arc<RwLock<Arc<str>>>,
}

impl ServiceRuntime {
    /// Starts with `model` as the current model.
    pub fn new(model: &str) -> Self {
        Self { current_model: Arc::new(RwLock::new(Arc::from(model))) }
    }

    /// The model generations use when a request names none.
    pub fn current_model(&self) -> Arc<str> {
        // A poisoned lock still holds a valid model name.
        self.current_model.read().unwrap_or_else(|poison| poison.into_inner()).clone()
    }
}

/// Adds the interface to `linker`; `get` finds the state in a store's data.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut ServiceRuntime,
) -> wasmtime::Result<()> {
    runtime::add_to_linker::<T, HasSelf<ServiceRuntime>>(linker, get)
}
