//! Background health checks: every HEALTH_CHECK_INTERVAL the host asks the
//! backend whether it is there (Ollama: GET /api/version; OpenAI-compatible:
//! GET /v1/models) and pings the cache. /health reads the latest results and
//! never waits on the backend itself. The first round runs at start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::caps::backend::pool::{Pool, refresh};
use crate::caps::backend::protocol::Protocol;
use crate::caps::cache::ResponseCache;

/// A dependency's state as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyStatus {
    /// Not checked yet.
    Unknown = 0,
    /// Answered in time.
    Up = 1,
    /// Answered, slowly.
    Slow = 2,
    /// Did not answer.
    Down = 3,
}

impl DependencyStatus {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Up,
            2 => Self::Slow,
            3 => Self::Down,
            _ => Self::Unknown,
        }
    }
}

/// What the checks are told.
#[derive(Clone)]
pub struct CheckSettings {
    /// Time between rounds.
    pub interval: Duration,
    /// Past this a backend answer counts as slow.
    pub slow_after: Duration,
    /// The backend's base URL and protocol.
    pub base_url: String,
    /// Which probe path to use.
    pub kind: Protocol,
    /// Several nodes: each is refreshed (models, loaded models) instead,
    /// and the backend is up while any node is.
    pub pool: Option<Arc<Pool>>,
}

/// The latest results.
#[derive(Debug, Default)]
pub struct HealthChecks {
    backend: AtomicU8,
}

impl HealthChecks {
    /// The backend's state from the latest round.
    pub fn backend(&self) -> DependencyStatus {
        DependencyStatus::from_u8(self.backend.load(Ordering::Relaxed))
    }

    /// Runs a round now and then every `settings.interval`, until the
    /// returned task is dropped or aborted.
    pub fn start(
        self: &Arc<Self>,
        settings: CheckSettings,
        cache: Arc<ResponseCache>,
    ) -> tokio::task::JoinHandle<()> {
        let checks = self.clone();
        tokio::spawn(async move {
            // A fresh connection per check: a pooled one could outlive a
            // backend that stopped accepting new ones.
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build_http();
            let path = settings.kind.probe_path();
            let url: http::Uri = match format!("{}{path}", settings.base_url.trim_end_matches('/')).parse() {
                Ok(url) => url,
                Err(_) => return,
            };
            let mut ticker = tokio::time::interval(settings.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let status = match &settings.pool {
                    Some(pool) => match refresh::round(pool, &client, settings.interval).await {
                        0 => DependencyStatus::Down,
                        _ => DependencyStatus::Up,
                    },
                    None => probe(&client, &url, &settings).await,
                };
                let previous =
                    DependencyStatus::from_u8(checks.backend.swap(status as u8, Ordering::Relaxed));
                if previous != status {
                    match status {
                        DependencyStatus::Down => {
                            tracing::warn!(cap = "backend", %url, "backend check failed: backend down")
                        }
                        DependencyStatus::Slow => tracing::warn!(cap = "backend", %url, "backend check slow"),
                        _ => tracing::info!(cap = "backend", %url, "backend check passed"),
                    }
                }
                cache.ping().await;
            }
        })
    }
}

async fn probe(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &http::Uri,
    settings: &CheckSettings,
) -> DependencyStatus {
    let started = Instant::now();
    let request = match http::Request::get(url.clone()).body(Empty::new()) {
        Ok(request) => request,
        Err(_) => return DependencyStatus::Down,
    };
    // A check never takes longer than the interval it runs in.
    let answer = tokio::time::timeout(settings.interval, async {
        let response = client.request(request).await.ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        ok.then_some(())
    })
    .await;
    match answer {
        Ok(Some(())) if started.elapsed() > settings.slow_after => DependencyStatus::Slow,
        Ok(Some(())) => DependencyStatus::Up,
        _ => DependencyStatus::Down,
    }
}
