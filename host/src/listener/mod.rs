//! One accept loop for both listeners (the service's and the admin API's),
//! and the limits every connection lives under.
//!
//! - At most `max_connections` connections at once. Past it, the oldest
//!   connection that has sent nothing yet is shed to make room
//!   ([`silent`]); with none, a new connection is closed as soon as it is
//!   accepted, so it fails fast instead of queueing, while the connections
//!   in progress finish. The cap is held below the process's
//!   file-descriptor limit, less a reserve for the admin port, so the
//!   service always has descriptors left for its backend, KeyDB, logs and
//!   operators.
//! - A connection must send a complete request head within
//!   `header_read_timeout`, also when it sits idle between keep-alive
//!   requests (hyper's header-read timer covers both), or it is closed:
//!   slowloris clients and silent connections cannot pile up.
//! - After a flood of connections drains, the allocator gives its free
//!   memory back ([`trim`]).
//! - hyper's own answers to heads it cannot take (400, 431) carry a JSON
//!   error ([`worded`]).
//! - A failing `accept` (out of descriptors, say) backs off, doubling up to
//!   a second, and its warning is written at most once a second with a
//!   count, so the loop can never spin.

pub mod silent;
mod trim;
pub mod worded;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::silent::{Shed, SilentConnections, Watched};
use self::worded::Worded;

/// Descriptors kept back from the connection cap for everything else the
/// process opens (backend and KeyDB connections, compiled components, logs).
const RESERVED_DESCRIPTORS: usize = 256;
/// The admin port's connection cap, kept back from the service port's.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;
/// How long a full listener waits for a shed connection's slot.
const SHED_WAIT: Duration = Duration::from_secs(1);
/// The first pause after a failed accept; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per kind of trouble in this long.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// What bounds a listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time to send a request head, and to start the next one on a kept-alive connection.
    pub header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// `max_connections`, cut to what the file-descriptor limit allows once
    /// the reserve and the admin port's connections are kept back.
    pub fn within_descriptor_limit(self) -> Self {
        let limit = open_files_limit()
            .map_or(usize::MAX, |limit| limit.saturating_sub(RESERVED_DESCRIPTORS + ADMIN_MAX_CONNECTIONS));
        let max_connections = self.max_connections.min(limit).max(1);
        if max_connections < self.max_connections {
            tracing::warn!(
                requested = self.max_connections,
                max_connections,
                "MAX_CONNECTIONS cut to fit the open-files limit (ulimit -n)"
            );
        }
        Self { max_connections, ..self }
    }

    /// An HTTP/1.1 connection builder with these limits' timeouts.
    pub fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(self.header_read_timeout).keep_alive(true);
        builder
    }
}

/// A connection accepted: its stream, its peer, the permit that counts it
/// (held until it closes), and what completes if it is shed (its task then
/// closes it).
pub struct Accepted {
    /// The stream, watched for its first byte, hyper's own errors worded.
    pub stream: Watched<Worded<TcpStream>>,
    /// Who connected.
    pub peer: SocketAddr,
    /// Its slot under the cap.
    pub permit: OwnedSemaphorePermit,
    /// Completes when the connection is shed (silent while the cap is full).
    pub shed: Shed,
}

/// Accepts connections on `listener` until `shutdown` completes, handing
/// each to `serve`; `name` labels logs.
pub async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    mut serve: impl FnMut(Accepted),
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let silent = Arc::new(SilentConnections::default());
    trim::after_floods(slots.clone(), limits.max_connections);
    let mut shutdown = std::pin::pin!(shutdown);
    let (mut backoff, mut accept_trouble, mut refusals) =
        (FIRST_BACKOFF, Throttled::default(), Throttled::default());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = FIRST_BACKOFF;
                accepted
            }
            Err(error) => {
                if let Some(count) = accept_trouble.note() {
                    tracing::warn!(listener = name, %error, count, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let room = match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            // Full: a silent connection makes room for this one.
            Err(_) if silent.shed_oldest() => {
                tokio::time::timeout(SHED_WAIT, slots.clone().acquire_owned()).await.ok().and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = room else {
            // Closing at once frees the descriptor and tells the client now.
            drop(stream);
            if let Some(count) = refusals.note() {
                tracing::warn!(
                    listener = name,
                    max_connections = limits.max_connections,
                    count,
                    "connection cap reached; closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (stream, shed) = silent.watch(Worded::new(stream));
        serve(Accepted { stream, peer, permit, shed });
    }
}

/// Counts events and says when one may be logged (at most once per
/// [`WARN_EVERY`]), with how many happened since the last.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    count: u64,
}

impl Throttled {
    fn note(&mut self) -> Option<u64> {
        self.count += 1;
        if self.last.is_some_and(|last| last.elapsed() < WARN_EVERY) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.count))
    }
}

/// The soft open-files limit, from /proc (Linux); `None` elsewhere.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_warning_carries_the_count_it_stood_for() {
        let mut throttled = Throttled::default();
        assert_eq!(throttled.note(), Some(1));
        assert_eq!((0..100).filter_map(|_| throttled.note()).count(), 0, "no second line within a second");
        throttled.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(throttled.note(), Some(101));
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        let limits =
            ConnectionLimits { max_connections: usize::MAX, header_read_timeout: Duration::from_secs(1) };
        let capped = limits.within_descriptor_limit().max_connections;
        let limit = open_files_limit().expect("Linux has /proc/self/limits");
        assert!(capped <= limit.saturating_sub(RESERVED_DESCRIPTORS).max(1), "{capped} vs {limit}");
    }
}
