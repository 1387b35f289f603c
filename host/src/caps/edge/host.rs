//! The generated `edge` trait: a request's offer goes to the [`EdgeCache`]
//! under the request's ticket, capped by what its cache lookups found.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use super::{EdgeCache, EdgeTicket};
use crate::bindings::llm_service::host::edge::{self, Host, Replay};
use crate::caps::cache::LookupTrace;
use crate::caps::cache::stamped::now_ms;

/// What a request's store lends the edge functions.
pub struct EdgeView<'a> {
    /// The edge tier.
    pub edge: &'a Arc<EdgeCache>,
    /// The request's place in it (None: the tier is off).
    pub ticket: Option<EdgeTicket>,
    /// What the request's cache lookups found fresh.
    pub trace: &'a LookupTrace,
}

struct EdgeData;

impl HasData for EdgeData {
    type Data<'a> = EdgeView<'a>;
}

/// Adds the interface to `linker`; `get` lends a store's view.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> EdgeView<'_>,
) -> wasmtime::Result<()> {
    edge::add_to_linker::<T, EdgeData>(linker, get)
}

impl Host for EdgeView<'_> {
    fn accepting(&mut self) -> bool {
        self.ticket.is_some_and(|ticket| self.edge.accepting(&ticket))
    }

    fn offer(&mut self, replay: Replay) {
        let Some(ticket) = self.ticket else { return };
        // Never fresher than the cached answer this request found; a
        // request that found none offers an answer no tier vouches for.
        let fresh_for = self.trace.latest().map_or(Duration::ZERO, |found| {
            Duration::from_millis(found.fresh_until_ms.saturating_sub(now_ms()))
        });
        self.edge.keep(&ticket, replay, fresh_for);
    }
}
