//! Connections kept for blocking reads (`XREAD BLOCK`), apart from the
//! multiplexed one every other command shares.

use std::time::Duration;

/// The longest a blocking read waits: a reader's response timeout is the
/// store's plus this.
pub const MAX_BLOCK: Duration = Duration::from_secs(1);

/// Connections kept for blocking reads (`XREAD BLOCK`), which must not
/// share the store's connection: a blocked read holds up every command
/// behind it. A read takes an idle one or makes one, and gives it back
/// when it answered; at most [`Readers::MAX_IDLE`] wait idle, and at most
/// [`Readers::MAX_IN_USE`] are in use at once, so relays stay inside the
/// descriptors the listener keeps back (its `RESERVED_DESCRIPTORS`)
/// however many flights are followed. A read that finds them all in use
/// waits its turn for up to its block time and then reads nothing (never
/// an error: a busy store is not a store that is down); one that waited
/// blocks only briefly, so readers go round.
pub struct Readers<C> {
    idle: std::sync::Mutex<Vec<C>>,
    in_use: tokio::sync::Semaphore,
}

impl<C> Default for Readers<C> {
    fn default() -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            in_use: tokio::sync::Semaphore::new(Self::MAX_IN_USE),
        }
    }
}

/// How long a read that had to wait for a reader blocks.
const TURN: Duration = Duration::from_millis(25);

impl<C> Readers<C> {
    /// Idle readers kept at most.
    pub const MAX_IDLE: usize = 16;
    /// Readers in use at once at most.
    pub const MAX_IN_USE: usize = 64;

    pub(super) fn take(&self) -> Option<C> {
        self.idle.lock().unwrap_or_else(|poison| poison.into_inner()).pop()
    }

    pub(super) fn give_back(&self, reader: C) {
        let mut idle = self.idle.lock().unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < Self::MAX_IDLE {
            idle.push(reader);
        }
    }

    /// A turn to read blocking up to `block`: the permit and how long to
    /// block, or `None` when no reader freed up within `block`.
    pub(super) async fn turn(&self, block: Duration) -> Option<(tokio::sync::SemaphorePermit<'_>, Duration)> {
        if let Ok(permit) = self.in_use.try_acquire() {
            return Some((permit, block));
        }
        let permit = tokio::time::timeout(block, self.in_use.acquire()).await.ok()?.ok()?;
        Some((permit, block.min(TURN)))
    }
}
