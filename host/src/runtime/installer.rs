//! Checking and swapping in a new handler, for the admin API and the
//! directory watcher alike: compile (or take it from the compiled cache),
//! check that it is a handler, smoke-check it in its own instance (`GET
//! /health` must answer 200 or 503 within a deadline), then install it. A
//! refused component never serves a request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full};
use wasmtime::component::Linker;

use super::canary::Canary;
use super::handler::{HandlerComponent, Ticket};
use super::reuse::InstanceSlot;
use super::state::RequestState;
use super::versions::{HandlerVersion, HandlerVersions};
use crate::caps::HostCapabilities;
use crate::guest::compiled::CompiledCache;
use crate::routing::RoutingKey;

/// How long a new handler's smoke-check `GET /health` may take.
const SMOKE_DEADLINE: Duration = Duration::from_secs(5);

/// What installing needs.
pub struct HandlerInstaller {
    versions: Arc<HandlerVersions>,
    linker: Linker<RequestState>,
    compiled: CompiledCache,
    capabilities: HostCapabilities,
}

/// Why a push was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// It does not compile or is not a handler.
    #[error(transparent)]
    Load(#[from] crate::runtime::handler::LoadError),
    /// Its /health failed.
    #[error("smoke check failed: GET /health {reason}")]
    Smoke {
        /// What happened.
        reason: String,
    },
}

impl HandlerInstaller {
    /// An installer swapping `versions`.
    pub fn new(
        versions: Arc<HandlerVersions>,
        linker: Linker<RequestState>,
        compiled: CompiledCache,
        capabilities: HostCapabilities,
    ) -> Self {
        Self { versions, linker, compiled, capabilities }
    }

    /// The versions it swaps.
    pub fn versions(&self) -> &Arc<HandlerVersions> {
        &self.versions
    }

    /// Loads `bytes` from `source`, smoke-checks and installs it.
    pub async fn push(&self, bytes: Bytes, source: &str) -> Result<Arc<HandlerVersion>, PushError> {
        let size = bytes.len();
        let component = self.checked(bytes, source).await?;
        Ok(self.versions.install(component, size))
    }

    /// Loads `bytes` from `source`, smoke-checks it and starts it as the
    /// canary at `percent`.
    pub async fn canary(&self, bytes: Bytes, source: &str, percent: u32) -> Result<Arc<Canary>, PushError> {
        let size = bytes.len();
        let component = self.checked(bytes, source).await?;
        Ok(self.versions.start_canary(component, size, percent))
    }

    /// `bytes`, loaded and smoke-checked.
    async fn checked(&self, bytes: Bytes, source: &str) -> Result<HandlerComponent, PushError> {
        let (linker, compiled, source_owned, bytes_for_load) =
            (self.linker.clone(), self.compiled.clone(), source.to_string(), bytes.clone());
        // Compiling is seconds of CPU: keep it off the async workers.
        let component = tokio::task::spawn_blocking(move || {
            HandlerComponent::load(&linker, &compiled, &bytes_for_load, &source_owned)
        })
        .await
        .map_err(|error| PushError::Smoke { reason: format!("loader failed: {error}") })??;
        self.smoke(&component).await?;
        Ok(component)
    }

    async fn smoke(&self, component: &HandlerComponent) -> Result<(), PushError> {
        let request = hyper::Request::get("http://localhost/health")
            .header(header::HOST, "localhost")
            .body(Full::new(Bytes::new()))
            .map_err(|error| PushError::Smoke { reason: error.to_string() })?;
        let answer = tokio::time::timeout(SMOKE_DEADLINE, async {
            let response = component
                .serve(request, &self.capabilities, smoke_ticket(), (), &InstanceSlot::disabled())
                .await
                .map_err(|error| error.to_string())?;
            let status = response.status();
            response.into_body().collect().await.map_err(|error| format!("body failed: {error}"))?;
            Ok::<_, String>(status)
        })
        .await;
        match answer {
            Ok(Ok(StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE)) => Ok(()),
            Ok(Ok(status)) => Err(PushError::Smoke { reason: format!("answered {status}") }),
            Ok(Err(reason)) => Err(PushError::Smoke { reason }),
            Err(_) => Err(PushError::Smoke { reason: format!("did not answer within {SMOKE_DEADLINE:?}") }),
        }
    }
}

fn smoke_ticket() -> Ticket {
    Ticket {
        span: tracing::Span::none(),
        tenant: None,
        request_id: Arc::from("smoke-check"),
        routing_key: RoutingKey::of(None, b"", "installer"),
        timeout: SMOKE_DEADLINE,
        served_by: Default::default(),
        edge: None,
        trace: Default::default(),
    }
}
