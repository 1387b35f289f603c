//! The bound on generations in flight to the backend (MAX_CONCURRENT_REQUESTS)
//! with a bounded queue in front of it (MAX_QUEUED_GENERATIONS).
//!
//! A slot is taken at once when one is free; otherwise the caller waits in
//! the queue until a slot frees or its deadline passes. A full queue refuses
//! at once, so overload turns into fast 503s rather than unbounded waiting.
//! Only backend calls take slots: requests that need no backend never wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no slot was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The queue already holds its maximum.
    #[error("{queued} generations already wait for a backend slot")]
    QueueFull {
        /// How many were waiting.
        queued: u32,
    },
    /// The deadline passed while waiting in the queue.
    #[error("no backend slot freed before the request deadline")]
    Deadline,
}

/// Backend slots and the queue in front of them.
#[derive(Debug)]
pub struct GenerationLimiter {
    slots: Arc<Semaphore>,
    max_slots: u32,
    queued: AtomicU32,
    max_queued: u32,
}

impl GenerationLimiter {
    /// `max_slots` in flight, `max_queued` waiting.
    pub fn new(max_slots: u32, max_queued: u32) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_slots as usize)),
            max_slots,
            queued: AtomicU32::new(0),
            max_queued,
        }
    }

    /// Takes a slot, waiting in the queue up to `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, LimitError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let queued = self.queued.fetch_add(1, Ordering::AcqRel);
        let _leave = LeaveQueue(&self.queued);
        if queued >= self.max_queued {
            return Err(LimitError::QueueFull { queued });
        }
        match tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a deadline anyway.
            Ok(Err(_)) | Err(_) => Err(LimitError::Deadline),
        }
    }

    /// Generations holding a slot now.
    pub fn in_flight(&self) -> u32 {
        self.max_slots - self.slots.available_permits() as u32
    }

    /// Generations waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Acquire)
    }
}

struct LeaveQueue<'a>(&'a AtomicU32);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let limiter = GenerationLimiter::new(1, 1);
        let far = Instant::now() + Duration::from_secs(60);
        let _held = limiter.acquire(far).await.unwrap();
        let waiter = {
            let limiter = Arc::new(limiter);
            let waiting = limiter.clone();
            let task = tokio::spawn(async move { waiting.acquire(far).await.map(drop) });
            while limiter.queued() == 0 {
                tokio::task::yield_now().await;
            }
            assert_eq!(limiter.acquire(far).await.unwrap_err(), LimitError::QueueFull { queued: 1 });
            task
        };
        waiter.abort();
    }

    #[tokio::test]
    async fn a_waiter_gives_up_at_its_deadline() {
        let limiter = GenerationLimiter::new(1, 8);
        let _held = limiter.acquire(Instant::now() + Duration::from_secs(60)).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(limiter.acquire(soon).await.unwrap_err(), LimitError::Deadline);
        assert_eq!(limiter.queued(), 0, "leaving the queue is counted");
        assert_eq!(limiter.in_flight(), 1);
    }
}
