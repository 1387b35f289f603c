//! One call into a guest, bounded and observed the same way for the
//! handler and the plugins.
//!
//! - [`arm_deadline`]: a computing guest yields its tokio worker every
//!   epoch tick and is interrupted at the deadline.
//! - [`within`]: the wall-clock backstop for a guest parked in a host call,
//!   where epochs are not checked.
//! - [`GuestOutput`]: what the guest writes to stdout/stderr, kept in a
//!   small buffer for the log line of a failure.
//! - [`classify`]: an interrupt is a timeout; anything else is a trap.

use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::engine::EPOCH_TICK;

/// Guest output kept per call: enough for a panic message.
const GUEST_OUTPUT_CAPACITY: usize = 4096;

/// Makes `store`'s guest yield every epoch tick and trap at `deadline`.
pub fn arm_deadline<T>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
    });
}

/// Runs `call` until `deadline` plus two epoch ticks (the epoch normally
/// fires first); `None` if the backstop did.
pub async fn within<T>(deadline: Instant, call: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout_at((deadline + 2 * EPOCH_TICK).into(), call).await.ok()
}

/// How a guest call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFailure {
    /// Interrupted at its deadline.
    Timeout,
    /// Trapped (a panic, an out-of-memory abort, a host bug): wasmtime's words.
    Trap(String),
}

/// Tells an interrupt (the deadline) from a trap.
pub fn classify(error: &wasmtime::Error) -> GuestFailure {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        GuestFailure::Timeout
    } else {
        GuestFailure::Trap(format!("{error:#}"))
    }
}

/// A guest's stdout and stderr, captured.
#[derive(Clone)]
pub struct GuestOutput(MemoryOutputPipe);

impl Default for GuestOutput {
    fn default() -> Self {
        Self(MemoryOutputPipe::new(GUEST_OUTPUT_CAPACITY))
    }
}

impl GuestOutput {
    /// The pipe to hand the guest's WASI context (stdout and stderr).
    pub fn pipe(&self) -> MemoryOutputPipe {
        self.0.clone()
    }

    /// What was written, trimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.contents()).trim().to_string()
    }
}

/// A deadline no later than `limit` from now.
pub fn deadline_within(deadline: Instant, limit: Duration) -> Instant {
    deadline.min(Instant::now() + limit)
}
