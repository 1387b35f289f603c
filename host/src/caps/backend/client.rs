//! The pooled keep-alive client to the backend, with timeouts and retries.
//!
//! One client for the process (connections are reused across requests and
//! components). Each attempt has a connect timeout and a first-byte timeout;
//! the response body has a between-chunks timeout. Connection errors (refused,
//! or closed before an answer) and 502/503/504 answers are retried with exponential backoff and full jitter,
//! up to `retry_attempts` times and never past the request's deadline; other
//! statuses are returned as they are. The answer's slot is an
//! [`AnswerGuard`], which hears every chunk and how the answer ended (a
//! pool's node is judged by it).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use wasmtime_wasi_http::Error as HttpError;

use super::allowlist::AllowlistResolver;
use crate::traces::spans;
use tracing::Instrument;

/// First backoff; doubled per retry.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest backoff between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Idle connections are closed after this; Ollama keeps them for 5 minutes.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How an answer's body ended, as its [`AnswerGuard`] hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEnd {
    /// The backend finished it.
    Finished,
    /// It broke off: a read error, a timeout, or too big.
    Failed,
    /// The component stopped reading before its end.
    Abandoned,
}

/// How an answer's body is framed, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document.
    Whole,
    /// One JSON object per line.
    Ndjson,
    /// Server-sent events.
    Sse,
}

impl Framing {
    /// The framing `headers` announce.
    pub fn of(headers: &http::HeaderMap) -> Self {
        let kind =
            headers.get(http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
        if kind.starts_with("text/event-stream") {
            Self::Sse
        } else if kind.starts_with("application/x-ndjson") {
            Self::Ndjson
        } else {
            Self::Whole
        }
    }
}

/// What holds a call's slot while its answer is read, and hears the answer
/// go by: a pool's node judges its answers so (see `pool::answer`).
pub trait AnswerGuard: Send + 'static {
    /// The answer's head arrived.
    fn head(&mut self, _status: StatusCode, _headers: &http::HeaderMap) {}
    /// A chunk of the answer's body passed.
    fn chunk(&mut self, _data: &[u8]) {}
    /// The answer ended; the slot goes with `self`.
    fn ended(self, _how: AnswerEnd)
    where
        Self: Sized,
    {
    }
}

/// A generation slot of the single backend's limiter judges nothing.
impl AnswerGuard for tokio::sync::OwnedSemaphorePermit {}

/// How the client behaves.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Idle keep-alive connections kept.
    pub max_idle_connections: usize,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Time to the first byte, and between body chunks.
    pub read_timeout: Duration,
    /// Retries after the first attempt.
    pub retry_attempts: u32,
}

/// The backend client.
#[derive(Debug)]
pub struct BackendClient {
    client: Client<HttpConnector<AllowlistResolver>, Full<Bytes>>,
    settings: ClientSettings,
    retries: prometheus::IntCounter,
    /// Set once the shutdown's grace period is over: every answer still
    /// being read fails with [`CUT_SHORT`].
    cut: tokio::sync::watch::Sender<bool>,
}

/// What a component reads from an answer cut at the end of the shutdown's
/// grace period (it ends its stream with this as the dialect's error).
pub const CUT_SHORT: &str = "the service is shutting down: its grace period is over";

impl BackendClient {
    /// A client that connects only through `resolver`, counting its retries
    /// in `retries`.
    pub fn new(
        resolver: AllowlistResolver,
        settings: ClientSettings,
        retries: prometheus::IntCounter,
    ) -> Self {
        let mut connector = HttpConnector::new_with_resolver(resolver);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_connections)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Self { client, settings, retries, cut: tokio::sync::watch::Sender::new(false) }
    }

    /// Fails every answer still being read (and every later one) with
    /// [`CUT_SHORT`], so each component ends its answer with an error of
    /// its dialect instead of being cut off mid-stream.
    pub fn cut_answers(&self) {
        self.cut.send_replace(true);
    }

    /// Retries made since start.
    pub fn retries_total(&self) -> u64 {
        self.retries.get()
    }

    /// Sends `parts` + `body`, retrying as the module says. The answer's body
    /// holds `guard` (a generation slot) until it ends.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        deadline: Instant,
        guard: impl AnswerGuard,
    ) -> Result<http::Response<GuardedBody>, HttpError> {
        self.send_with_retries(parts, body, deadline, deadline, guard, self.settings.retry_attempts).await
    }

    /// Sends once, without retrying: for a caller that retries elsewhere
    /// (another node of a pool), which may want the first byte by
    /// `first_byte_by` (never later than the read timeout allows).
    pub async fn send_once(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        first_byte_by: Instant,
        deadline: Instant,
        guard: impl AnswerGuard,
    ) -> Result<http::Response<GuardedBody>, HttpError> {
        self.send_with_retries(parts, body, first_byte_by.min(deadline), deadline, guard, 0).await
    }

    async fn send_with_retries(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        first_byte_by: Instant,
        deadline: Instant,
        guard: impl AnswerGuard,
        retries: u32,
    ) -> Result<http::Response<GuardedBody>, HttpError> {
        let mut attempt = 0;
        loop {
            let request = rebuild(parts, body.clone());
            let outcome = self.attempt(request, first_byte_by).await;
            let retryable = match &outcome {
                Ok(response) => matches!(
                    response.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(error) => matches!(error, HttpError::ConnectionRefused | HttpError::ConnectionTerminated),
            };
            let delay = backoff(attempt);
            if !retryable || attempt >= retries || Instant::now() + delay >= deadline {
                spans::record_current_number("llm_service.backend.attempts", i64::from(attempt) + 1);
                let (timeout, cut) = (self.settings.read_timeout, self.cut.subscribe());
                return Ok(GuardedBody::new(outcome?, timeout, deadline, guard, cut).await);
            }
            attempt += 1;
            self.retries.inc();
            let reason = match &outcome {
                Ok(response) => format!("status {}", response.status().as_u16()),
                Err(error) => error.to_string(),
            };
            let (trace_id, span_id) = crate::traces::ids(&tracing::Span::current()).unzip();
            tracing::warn!(cap = "backend", attempt, delay_ms = delay.as_millis() as u64, %reason, trace_id = trace_id.as_deref(), span_id = span_id.as_deref(), "retrying backend request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        request: http::Request<Full<Bytes>>,
        first_byte_by: Instant,
    ) -> Result<http::Response<Incoming>, HttpError> {
        let first_byte = (Instant::now() + self.settings.read_timeout).min(first_byte_by);
        match tokio::time::timeout_at(first_byte.into(), self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if error.is_connect() => {
                tracing::debug!(cap = "backend", error = %error, "connect failed");
                Err(HttpError::ConnectionRefused)
            }
            Ok(Err(error)) => {
                tracing::debug!(cap = "backend", error = %error, "request failed");
                Err(HttpError::ConnectionTerminated)
            }
            Err(_elapsed) => Err(HttpError::ConnectionReadTimeout),
        }
    }
}

fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.headers_mut() = parts.headers.clone();
    // The backend's spans join the trace under this call's.
    crate::traces::propagate::inject(&tracing::Span::current(), request.headers_mut());
    request
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^n)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX);
    ceiling.mul_f64(fastrand::f64())
}

/// A backend answer's body, read whole before the component sees it or by
/// a task of its own.
///
/// The answer is read as the backend sends it, whether or not the
/// component has asked for it yet, and the generation's slot (the guard)
/// ends when the backend's answer ends. A slot is a generation at the
/// backend: tying it to the component's reading would let a component that
/// waits on one answer (a batch reading its items in order) starve the
/// answers it has not read yet of slots, and wait for ever.
///
/// A whole answer of a known, small length (a generation that is not
/// streamed) is read before the call returns: it is all there within one
/// read or two, and the component then reads it without waiting on another
/// task. Anything else (a stream, an answer of unknown length) is read by a
/// task of its own, so the component gets each chunk as it arrives. Either
/// way the read gives up after `timeout` without a chunk, or at the
/// request's `deadline` (less the margin the component needs to say so);
/// the task also stops (closing the backend connection, which cancels the
/// generation) as soon as the component drops the body.
pub struct GuardedBody {
    frames: Frames,
}

enum Frames {
    /// Read whole already: its frames, then possibly the error it ended with.
    Read(std::collections::VecDeque<Result<Frame<Bytes>, HttpError>>),
    /// Being read by its task.
    Pumped(mpsc::UnboundedReceiver<Result<Frame<Bytes>, HttpError>>),
}

/// The most of one answer held for a component: generated text is small;
/// this only bounds a misbehaving backend.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The longest answer read whole before the call returns (by its
/// `Content-Length`); longer ones stream through the task.
const MAX_READ_WHOLE: u64 = 256 << 10;

impl GuardedBody {
    async fn new(
        response: http::Response<Incoming>,
        timeout: Duration,
        deadline: Instant,
        mut guard: impl AnswerGuard,
        cut: tokio::sync::watch::Receiver<bool>,
    ) -> http::Response<Self> {
        guard.head(response.status(), response.headers());
        let (head, inner) = response.into_parts();
        let mut reader = Reader { inner, timeout, deadline, received: 0 };
        if !read_whole(&head.headers) {
            let (sender, frames) = mpsc::unbounded_channel();
            // The call's span stays open until its answer has been read.
            tokio::spawn(pump(reader, guard, sender, cut).instrument(tracing::Span::current()));
            return http::Response::from_parts(head, Self { frames: Frames::Pumped(frames) });
        }
        let mut frames = std::collections::VecDeque::new();
        let how = loop {
            match reader.next(&mut guard).await {
                None => break AnswerEnd::Finished,
                Some(Ok(frame)) => frames.push_back(Ok(frame)),
                Some(Err(error)) => {
                    frames.push_back(Err(error));
                    break AnswerEnd::Failed;
                }
            }
        };
        guard.ended(how);
        http::Response::from_parts(head, Self { frames: Frames::Read(frames) })
    }
}

/// Whether an answer with `headers` is read whole before the call returns:
/// its length is known and small, and it is not a stream.
fn read_whole(headers: &http::HeaderMap) -> bool {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse::<u64>().ok());
    Framing::of(headers) == Framing::Whole && length.is_some_and(|length| length <= MAX_READ_WHOLE)
}

/// The backend's answer, read one frame at a time within its timeouts.
struct Reader {
    inner: Incoming,
    timeout: Duration,
    deadline: Instant,
    received: usize,
}

impl Reader {
    /// The next frame as the component gets it (`None`: the answer ended),
    /// shown to `guard` first.
    async fn next(&mut self, guard: &mut impl AnswerGuard) -> Option<Result<Frame<Bytes>, HttpError>> {
        let wake = tokio::time::Instant::from_std((Instant::now() + self.timeout).min(self.deadline));
        match tokio::time::timeout_at(wake, self.inner.frame()).await {
            Err(_elapsed) => Some(Err(HttpError::ConnectionReadTimeout)),
            Ok(None) => None,
            Ok(Some(Err(error))) => Some(Err(HttpError::from(error))),
            Ok(Some(Ok(frame))) => {
                let data = frame.data_ref().map_or(&[][..], |data| data.as_ref());
                if self.received == 0 && !data.is_empty() {
                    spans::event_current("llm_service.backend.first_token");
                }
                self.received += data.len();
                guard.chunk(data);
                Some(if self.received > MAX_ANSWER_BYTES {
                    Err(HttpError::HttpResponseBodySize(Some(self.received as u64)))
                } else {
                    Ok(frame)
                })
            }
        }
    }
}

/// Moves the backend's answer into `sender` until it ends, fails, times
/// out, nobody reads it any more or the shutdown cuts it; the slot goes
/// with the task, told how the answer ended.
async fn pump(
    mut reader: Reader,
    mut guard: impl AnswerGuard,
    sender: mpsc::UnboundedSender<Result<Frame<Bytes>, HttpError>>,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            () = sender.closed() => return guard.ended(AnswerEnd::Abandoned),
            Ok(_) = cut.wait_for(|cut| *cut) => {
                let _ = sender.send(Err(HttpError::InternalError(Some(CUT_SHORT.into()))));
                return guard.ended(AnswerEnd::Abandoned);
            }
            next = reader.next(&mut guard) => next,
        };
        let Some(frame) = next else { return guard.ended(AnswerEnd::Finished) };
        let failed = frame.is_err();
        if sender.send(frame).is_err() {
            return guard.ended(AnswerEnd::Abandoned);
        }
        if failed {
            return guard.ended(AnswerEnd::Failed);
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match &mut self.frames {
            Frames::Read(frames) => Poll::Ready(frames.pop_front()),
            Frames::Pumped(frames) => frames.poll_recv(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.frames, Frames::Read(frames) if frames.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX);
            assert!(backoff(attempt) <= ceiling);
        }
        assert!(BACKOFF_BASE.saturating_mul(1 << 16).min(BACKOFF_MAX) == BACKOFF_MAX);
    }
}
