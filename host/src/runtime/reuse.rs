//! Instance reuse: a handler instance that answered a request cleanly may
//! answer the next request **on the same client connection**.
//!
//! Instantiating is most of a small request's cost; reuse is what makes the
//! cache hit fast. What reuse shares, and only between consecutive requests
//! of one HTTP/1.1 connection (which never overlap): the guest's linear
//! memory (its heap, including freed data) and globals. Never shared: the
//! host's per-request state (request id, deadline, outbound budget, version
//! tag are renewed), anything between two connections, anything after a
//! failure. An instance is dropped instead of kept after a trap or a
//! timeout, when it wrote to stdout/stderr (the output buffer is per
//! instance, and a failing guest's message must be its own), after
//! [`MAX_USES`] requests (bounding what a leaking guest can accumulate),
//! when the handler version changed, or when [`MAX_IDLE`] instances are
//! already kept (idle connections must not hold the instance pool). An idle
//! instance of a replaced handler keeps that version's code alive until its
//! connection's next request or close drops it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::state::RequestState;

/// Requests one instance answers at most.
pub const MAX_USES: u32 = 1000;
/// Idle instances kept across all connections; each holds a pool slot and
/// its resident memory.
pub const MAX_IDLE: usize = 128;

/// The instances kept idle right now, across connections.
#[derive(Debug, Default)]
pub struct IdleCount(AtomicUsize);

/// One place in the idle count; given back when dropped.
struct IdleTicket(Arc<IdleCount>);

impl Drop for IdleTicket {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An instance waiting for its connection's next request.
struct IdleInstance {
    sha256: Arc<str>,
    store: Store<RequestState>,
    proxy: Proxy,
    uses: u32,
    _ticket: IdleTicket,
}

/// Longest a request waits for its connection's previous instance to
/// finish: the response was already sent, so it is only the instance's last
/// steps (its body's end); past this the request gets a fresh instance.
const HANDOVER_WAIT: Duration = Duration::from_millis(50);

enum Kept {
    /// Nothing kept.
    Empty,
    /// A request's instance is still finishing; it may be kept.
    Finishing,
    /// Ready for the next request.
    Idle(IdleInstance),
}

/// One connection's kept instance (at most one: its requests run one at a
/// time).
#[derive(Clone)]
pub struct InstanceSlot {
    kept: Arc<Mutex<Kept>>,
    handed_over: Arc<Notify>,
    count: Arc<IdleCount>,
}

/// A request's claim on its connection's slot: [`keep`](Self::keep) hands
/// the instance to the connection's next request; dropping it (a failure,
/// an abort) leaves the slot empty.
pub struct SlotLease {
    slot: InstanceSlot,
    settled: bool,
}

impl InstanceSlot {
    /// An empty slot counted in `count`.
    pub fn new(count: Arc<IdleCount>) -> Self {
        Self { kept: Arc::new(Mutex::new(Kept::Empty)), handed_over: Arc::default(), count }
    }

    /// A slot that never keeps anything (smoke checks).
    pub fn disabled() -> Self {
        Self::new(Arc::new(IdleCount(AtomicUsize::new(MAX_IDLE))))
    }

    /// Claims the slot for a request; with the kept instance if there is
    /// one of the component `sha256` (waiting for the previous request's
    /// instance to finish, if it still is).
    pub async fn claim(&self, sha256: &str) -> (SlotLease, Option<(Store<RequestState>, Proxy, u32)>) {
        // Usually the previous instance settled long ago: no timer for that.
        let kept = match self.try_claim() {
            Some(kept) => kept,
            None => self.wait_for_handover().await,
        };
        let lease = SlotLease { slot: self.clone(), settled: false };
        let instance = kept.and_then(|IdleInstance { sha256: of, store, proxy, uses, .. }| {
            (&*of == sha256).then_some((store, proxy, uses))
        });
        (lease, instance)
    }

    /// What the previous request's instance settles to, waiting at most
    /// [`HANDOVER_WAIT`] (after that, nothing: a fresh instance serves).
    async fn wait_for_handover(&self) -> Option<IdleInstance> {
        let settled = tokio::time::timeout(HANDOVER_WAIT, async {
            loop {
                let handed_over = self.handed_over.notified();
                let mut handed_over = std::pin::pin!(handed_over);
                handed_over.as_mut().enable();
                if let Some(kept) = self.try_claim() {
                    return kept;
                }
                handed_over.await;
            }
        })
        .await;
        settled.ok().flatten()
    }

    /// `None` while the previous instance is finishing; else what was kept.
    fn try_claim(&self) -> Option<Option<IdleInstance>> {
        let mut kept = self.lock();
        match std::mem::replace(&mut *kept, Kept::Finishing) {
            Kept::Finishing => None,
            Kept::Empty => Some(None),
            Kept::Idle(idle) => Some(Some(idle)),
        }
    }

    fn settle(&self, next: Kept) {
        *self.lock() = next;
        self.handed_over.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

impl SlotLease {
    /// Keeps an instance that answered `uses` requests cleanly, if the
    /// rules allow; otherwise it is dropped.
    pub fn keep(mut self, sha256: Arc<str>, store: Store<RequestState>, proxy: Proxy, uses: u32) {
        self.settled = true;
        let slot = &self.slot;
        if uses >= MAX_USES || !store.data().guest_output().is_empty() {
            return slot.settle(Kept::Empty);
        }
        if slot.count.0.fetch_add(1, Ordering::Relaxed) >= MAX_IDLE {
            slot.count.0.fetch_sub(1, Ordering::Relaxed);
            return slot.settle(Kept::Empty);
        }
        let ticket = IdleTicket(slot.count.clone());
        slot.settle(Kept::Idle(IdleInstance { sha256, store, proxy, uses, _ticket: ticket }));
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if !self.settled {
            self.slot.settle(Kept::Empty);
        }
    }
}
