//! Memory back after a flood of connections. Each connection's buffers and
//! task are freed when it closes, but glibc's allocator keeps freed memory
//! in its arenas, so the resident set stays at the flood's peak. Once the
//! open connections have fallen well below their peak, the allocator is
//! asked to give its free pages back (`malloc_trim`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// How often the open connections are looked at.
const EVERY: Duration = Duration::from_secs(2);
/// Connections closed since the peak that make a trim worth its cost.
const CLOSED_FOR_A_TRIM: usize = 256;

/// Watches the connections of a listener with `max` slots in `slots`, and
/// trims the allocator after a flood has drained; ends with the process.
pub fn after_floods(slots: Arc<Semaphore>, max: usize) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut peak = 0usize;
        loop {
            ticker.tick().await;
            let open = max - slots.available_permits().min(max);
            peak = peak.max(open);
            if peak - open >= CLOSED_FOR_A_TRIM {
                let freed = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
                tracing::debug!(peak, open, freed, "connections drained: allocator trimmed");
                peak = open;
            }
        }
    });
}

/// Gives the allocator's free pages back to the system; whether any went.
#[cfg(target_env = "gnu")]
fn trim() -> bool {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(target_env = "gnu"))]
fn trim() -> bool {
    false
}
