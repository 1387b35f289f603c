//! Wrong admin tokens, counted per peer address: past
//! [`MAX_FAILURES_PER_WINDOW`] in a [`WINDOW`], a peer's calls are answered
//! 429 with `Retry-After` and its token is not even checked, so guessing is
//! held to a few tries a second per address; each peer that crosses the
//! limit is logged once per window. The peers remembered are bounded, and
//! a peer's count expires with its window. A correct token resets nothing:
//! an operator who shares an address with the one guessing waits the
//! window out.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::sync::Cache;

/// Wrong tokens a peer may send in one window.
pub const MAX_FAILURES_PER_WINDOW: u32 = 20;
/// How long a peer's count lasts (and a locked-out peer waits).
pub const WINDOW: Duration = Duration::from_secs(10);
/// Peers remembered at once: a flood from many addresses cannot grow it.
const MAX_PEERS: u64 = 4096;

/// Failures by peer address.
pub struct Lockout {
    failures: Cache<IpAddr, Arc<AtomicU32>>,
}

impl Default for Lockout {
    fn default() -> Self {
        Self { failures: Cache::builder().max_capacity(MAX_PEERS).time_to_live(WINDOW).build() }
    }
}

impl Lockout {
    /// Whether `peer` is past the limit in its window.
    pub fn locked(&self, peer: IpAddr) -> bool {
        self.failures.get(&peer).is_some_and(|count| count.load(Ordering::Relaxed) >= MAX_FAILURES_PER_WINDOW)
    }

    /// Counts a wrong token from `peer`; logs the one that crosses the limit.
    pub fn failed(&self, peer: IpAddr) {
        let count = self.failures.get_with(peer, || Arc::new(AtomicU32::new(0)));
        if count.fetch_add(1, Ordering::Relaxed) + 1 == MAX_FAILURES_PER_WINDOW {
            tracing::warn!(
                peer = %peer,
                failures = MAX_FAILURES_PER_WINDOW,
                window_s = WINDOW.as_secs(),
                "admin API: too many wrong tokens from one address; refusing it for the rest of the window"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_locked_out_past_the_limit_and_others_are_not() {
        let lockout = Lockout::default();
        let (guessing, other): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..MAX_FAILURES_PER_WINDOW - 1 {
            lockout.failed(guessing);
        }
        assert!(!lockout.locked(guessing));
        lockout.failed(guessing);
        assert!(lockout.locked(guessing));
        assert!(!lockout.locked(other));
    }
}
