//! The pooled keep-alive client to the backend, with timeouts and retries.
//!
//! One client for the process (connections are reused across requests and
//! components). Each attempt has a connect timeout and a first-byte timeout;
//! the response body has a between-chunks timeout. Connection errors (refused,
//! or closed before an answer) and 502/503/504 answers are retried with exponential backoff and full jitter,
//! up to `retry_attempts` times and never past the request's deadline; other
//! statuses are returned as they are.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use wasmtime_wasi_http::Error as HttpError;

use super::allowlist::AllowlistResolver;

/// First backoff; doubled per retry.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest backoff between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Idle connections are closed after this; Ollama keeps them for 5 minutes.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

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
}

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
        Self { client, settings, retries }
    }

    /// Retries made since start.
    pub fn retries_total(&self) -> u64 {
        self.retries.get()
    }

    /// Sends `parts` + `body`, retrying as the module says. The answer's body
    /// holds `permit` until it ends.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        deadline: Instant,
        permit: OwnedSemaphorePermit,
    ) -> Result<http::Response<GuardedBody>, HttpError> {
        let mut attempt = 0;
        loop {
            let request = rebuild(parts, body.clone());
            let outcome = self.attempt(request, deadline).await;
            let retryable = match &outcome {
                Ok(response) => matches!(
                    response.status(),
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
                ),
                Err(error) => matches!(error, HttpError::ConnectionRefused | HttpError::ConnectionTerminated),
            };
            let delay = backoff(attempt);
            if !retryable || attempt >= self.settings.retry_attempts || Instant::now() + delay >= deadline {
                let response = outcome?;
                let timeout = self.settings.read_timeout;
                return Ok(response.map(|body| GuardedBody::new(body, timeout, deadline, permit)));
            }
            attempt += 1;
            self.retries.inc();
            let reason = match &outcome {
                Ok(response) => format!("status {}", response.status().as_u16()),
                Err(error) => error.to_string(),
            };
            tracing::warn!(cap = "backend", attempt, delay_ms = delay.as_millis() as u64, %reason, "retrying backend request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        request: http::Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<http::Response<Incoming>, HttpError> {
        let first_byte = (Instant::now() + self.settings.read_timeout).min(deadline);
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
    request
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^n)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(1 << attempt.min(16)).min(BACKOFF_MAX);
    ceiling.mul_f64(fastrand::f64())
}

/// A backend response body that times out between chunks and releases the
/// generation slot when it ends or is dropped.
pub struct GuardedBody {
    inner: Incoming,
    timeout: Duration,
    /// No chunk is waited for past this (the request's deadline, less the
    /// margin the component needs to say so), so a stream cut by the
    /// deadline ends with the component's error line, not mid-air.
    deadline: Instant,
    sleep: Pin<Box<Sleep>>,
    permit: Option<OwnedSemaphorePermit>,
}

impl GuardedBody {
    fn new(inner: Incoming, timeout: Duration, deadline: Instant, permit: OwnedSemaphorePermit) -> Self {
        let sleep = Box::pin(tokio::time::sleep_until(next_wake(timeout, deadline)));
        Self { inner, timeout, deadline, sleep, permit: Some(permit) }
    }
}

/// When to give up waiting for the next chunk.
fn next_wake(timeout: Duration, deadline: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std((Instant::now() + timeout).min(deadline))
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.sleep.as_mut().reset(next_wake(this.timeout, this.deadline));
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.permit = None;
                Poll::Ready(Some(Err(HttpError::from(error))))
            }
            Poll::Ready(None) => {
                this.permit = None;
                Poll::Ready(None)
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.permit = None;
                    Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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
