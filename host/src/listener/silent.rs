//! The connections of a listener that have sent nothing yet, oldest first,
//! so a full listener sheds one of them before it refuses a new connection:
//! a pile of silent sockets cannot lock out a client (or an operator) that
//! has something to say. A connection leaves the list at its first byte
//! (or when it closes); one shed is closed by its task at once.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// A listener's silent connections.
#[derive(Default)]
pub struct SilentConnections {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next: u64,
    /// By age: each one's signal to close.
    by_age: BTreeMap<u64, oneshot::Sender<()>>,
}

impl SilentConnections {
    /// Counts `stream` as silent until it sends a byte: the stream to serve,
    /// and what completes if it is shed.
    pub fn watch<S>(self: &Arc<Self>, stream: S) -> (Watched<S>, Shed) {
        let (signal, shed) = oneshot::channel();
        let mut waiting = self.lock();
        let id = waiting.next;
        waiting.next += 1;
        waiting.by_age.insert(id, signal);
        (Watched { stream, silent: Some((self.clone(), id)) }, Shed(shed))
    }

    /// Sheds the oldest silent connection; whether there was one.
    pub fn shed_oldest(&self) -> bool {
        let oldest = self.lock().by_age.pop_first();
        oldest.is_some_and(|(_, signal)| signal.send(()).is_ok())
    }

    fn spoke(&self, id: u64) {
        self.lock().by_age.remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Completes when its connection is shed; never once it has spoken.
pub struct Shed(oneshot::Receiver<()>);

impl Shed {
    /// Waits until the connection is shed.
    pub async fn wait(self) {
        if self.0.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A stream that leaves the silent list at its first byte.
pub struct Watched<S> {
    stream: S,
    silent: Option<(Arc<SilentConnections>, u64)>,
}

impl<S> Watched<S> {
    fn heard(&mut self) {
        if let Some((silent, id)) = self.silent.take() {
            silent.spoke(id);
        }
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        self.heard();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.silent.is_some() && buf.filled().len() > before {
            self.heard();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_oldest_silent_one_is_shed_and_one_that_spoke_never_is() {
        let silent = Arc::new(SilentConnections::default());
        let (mut talker, talker_far) = tokio::io::duplex(64);
        let (mut quiet, _quiet_far) = tokio::io::duplex(64);
        let (mut spoke, spoke_shed) = silent.watch(talker_far);
        let (_watched, quiet_shed) = silent.watch(tokio::io::duplex(64).0);
        talker.write_all(b"GET").await.unwrap();
        let mut head = [0u8; 3];
        spoke.read_exact(&mut head).await.unwrap();
        assert!(silent.shed_oldest(), "the second, silent one");
        quiet_shed.wait().await;
        assert!(!silent.shed_oldest(), "none silent is left");
        let never = tokio::time::timeout(std::time::Duration::from_millis(20), spoke_shed.wait()).await;
        assert!(never.is_err(), "one that spoke is never shed");
        quiet.shutdown().await.unwrap();
    }
}
