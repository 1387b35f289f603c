//! Outbound HTTP to the model backend, the only network a component has.
//!
//! Components reach the backend through `wasi:http/outgoing-handler`; the
//! host answers through [`wasmtime_wasi_http::WasiHttpHooks::send_request`]
//! ([`BackendHooks`]): the URI must match the [`Allowlist`] (else
//! `HttpRequestDenied`); the call takes a generation slot from the
//! [`GenerationLimiter`] (a full queue → `ConnectionLimitReached`); the
//! request body is buffered so it can be retried; the pooled
//! [`BackendClient`] sends it with timeouts and retries, all inside the
//! request's deadline. Failures reach the component as `wasi:http` error
//! codes, never as traps.

pub mod allowlist;
pub mod client;
pub mod config;
mod host;
pub mod limiter;
pub mod pool;
pub mod protocol;
mod routed;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

pub use self::allowlist::Allowlist;
use self::allowlist::AllowlistResolver;
pub use self::client::BackendClient;
use self::client::ClientSettings;
use self::config::{BackendConfig, POOL_BASE_URL};
pub use self::limiter::GenerationLimiter;
use self::limiter::LimitError;
use self::pool::Pool;
pub use self::routed::ServedBy;
use crate::registry::counter;
use crate::routing::RoutingKey;

/// Time left to the component after its backend calls' deadline.
const RESPONSE_MARGIN: Duration = Duration::from_millis(250);

/// The backend capability's shared state, built once at start-up.
pub struct Backend {
    allowlist: Arc<Allowlist>,
    client: BackendClient,
    limiter: GenerationLimiter,
    /// Several nodes: the pool routes every call ([`routed`]).
    pool: Option<Arc<Pool>>,
    /// BACKENDS_FILE and its text when last read.
    file: Option<(std::path::PathBuf, String)>,
    retry_attempts: u32,
}

impl Backend {
    /// Parses the policy and builds the pooled client from `config`; its
    /// retry count joins the service's metrics in `registry`. Fails when
    /// BACKENDS_FILE cannot be read or a node is invalid.
    pub fn new(config: &BackendConfig, registry: &prometheus::Registry) -> Result<Self, String> {
        let allowlist = Arc::new(Allowlist::for_base_url(config.base_url()));
        let client = BackendClient::new(
            AllowlistResolver::new(allowlist.clone()),
            ClientSettings {
                max_idle_connections: config.max_connections,
                connect_timeout: Duration::from_secs(config.connect_timeout_s),
                read_timeout: Duration::from_secs(config.read_timeout_s),
                retry_attempts: config.retry_attempts,
            },
            counter(registry, "llm_service_backend_retries_total", "Backend requests retried."),
        );
        let limiter = GenerationLimiter::new(config.max_concurrent_requests, config.max_queued_generations);
        let (pool, file) = match config.nodes()? {
            Some((specs, text)) => {
                let pool = Pool::new(specs, allowlist.clone(), config.max_queued_generations, registry)?;
                let file = config.backends_file.clone().zip(text);
                (Some(pool), file)
            }
            None => (None, None),
        };
        Ok(Self { allowlist, client, limiter, pool, file, retry_attempts: config.retry_attempts })
    }

    /// The nodes, when there are several.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.pool.as_ref()
    }

    /// Starts re-reading BACKENDS_FILE on change, if there is one.
    pub fn watch_file(&self) -> Option<pool::file::FileWatch> {
        let (path, text) = self.file.clone()?;
        Some(pool::file::watch(path, text, self.pool.clone()?))
    }

    /// The per-request view: this backend and the request's deadline. Backend
    /// calls end a little before it, so the component still has time to turn
    /// a backend timeout into its own 504 before the host interrupts it.
    /// `key` and `served_by` are the request's: a conversation stays on its
    /// node, and the node that answered is recorded.
    pub fn hooks(
        self: &Arc<Self>,
        deadline: Instant,
        timeout: Duration,
        key: RoutingKey,
        served_by: ServedBy,
    ) -> BackendHooks {
        let margin = (timeout / 10).min(RESPONSE_MARGIN);
        BackendHooks { backend: self.clone(), deadline: deadline - margin, key, served_by }
    }

    /// The client (for telemetry).
    pub fn client(&self) -> &BackendClient {
        &self.client
    }

    /// Generations holding a backend slot now, and waiting for one.
    pub fn load(&self) -> (u32, u32) {
        match &self.pool {
            Some(pool) => (pool.nodes().iter().map(|node| node.in_flight()).sum(), pool.queued()),
            None => (self.limiter.in_flight(), self.limiter.queued()),
        }
    }

    async fn send(
        &self,
        request: http::Request<WasiBody>,
        deadline: Instant,
        key: RoutingKey,
        served_by: &ServedBy,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let addressed = match &self.pool {
            // The component addresses the pool; the host picks the node.
            Some(_) => {
                format!(
                    "{}://{}",
                    request.uri().scheme_str().unwrap_or_default(),
                    request.uri().authority().map_or("", |a| a.as_str())
                ) == POOL_BASE_URL
            }
            None => self.allowlist.permits(request.uri()),
        };
        if !addressed {
            tracing::warn!(cap = "backend", uri = %request.uri(), "outbound request denied: not the configured backend");
            return Err(HttpError::HttpRequestDenied);
        }
        // The body first, then a slot: a guest writing one request's body
        // must never wait on a slot that its own earlier requests hold (a
        // batch would freeze: its first requests keep the slots until it
        // reads their answers, which it cannot while its write is stuck).
        let (parts, body) = request.into_parts();
        let body = match tokio::time::timeout_at(deadline.into(), body.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(error)) => return Err(error),
            Err(_elapsed) => return Err(HttpError::ConnectionWriteTimeout),
        };
        if let Some(pool) = &self.pool {
            return self.send_routed(pool, parts, body, deadline, key, served_by).await;
        }
        let permit = self.limiter.acquire(deadline).await.map_err(|error| {
            tracing::warn!(cap = "backend", %error, "no backend slot");
            match error {
                LimitError::QueueFull { .. } => HttpError::ConnectionLimitReached,
                LimitError::Deadline => HttpError::ConnectionTimeout,
            }
        })?;
        let response = self.client.send(&parts, body, deadline, permit).await?;
        Ok(response.map(|body| body.boxed_unsync()))
    }
}

/// One request's handle on the backend, kept in its store.
pub struct BackendHooks {
    backend: Arc<Backend>,
    deadline: Instant,
    key: RoutingKey,
    served_by: ServedBy,
}
