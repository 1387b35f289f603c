//! A component's backend call when there are several nodes ([`super::pool`]).
//!
//! - The merged listings (`GET /api/tags`, `/api/ps`, `/v1/models`) are
//!   answered by the host from the nodes' last refresh.
//! - Any other call names its node by the `model` of its JSON body (a call
//!   without one may go to any node), and the protocol by its path (`/v1/`
//!   calls may go to any node: Ollama answers them too).
//! - The chosen node gets the call once. A connection failure or a 5xx
//!   answer (before any byte of its body) counts against the node's breaker
//!   and moves the call to another node that offers the model, up to
//!   OLLAMA_RETRY_ATTEMPTS moves and never past the deadline.
//! - No node offers the model → the component gets a 404 `{"error":
//!   "model '...' not found"}`, as from Ollama; only nodes whose breaker is
//!   open → 503.
//! - Which node answered goes to the request's [`ServedBy`] (its
//!   `X-Backend-Node` header and its log line).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::Backend;
use super::pool::node::Protocol;
use super::pool::{Pool, RouteError, listing};
use crate::routing::RoutingKey;

/// Which node answered a request's latest backend call, if any.
pub type ServedBy = Arc<std::sync::Mutex<Option<Arc<str>>>>;

/// The `model` of a call's JSON body.
#[derive(serde::Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
}

impl Backend {
    /// Sends a component's call through `pool`.
    pub(super) async fn send_routed(
        &self,
        pool: &Arc<Pool>,
        mut parts: http::request::Parts,
        body: Bytes,
        deadline: Instant,
        key: RoutingKey,
        served_by: &ServedBy,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        let path = parts.uri.path().to_string();
        if parts.method == Method::GET
            && let Some(merged) = listing::answer(pool, &path)
        {
            return Ok(synthesized(StatusCode::OK, &merged));
        }
        let named: Option<Named> =
            (parts.method == Method::POST).then(|| serde_json::from_slice(&body).ok()).flatten();
        let model = named.as_ref().and_then(|named| named.model.as_deref());
        let protocol = (!path.starts_with("/v1/")).then_some(Protocol::Ollama);
        // The node's own Host, not the one the component addressed.
        parts.headers.remove(http::header::HOST);
        let mut tried = Vec::new();
        loop {
            let lease = match pool.route(model, protocol, key, &tried, deadline).await {
                Ok(lease) => lease,
                Err(error) => return refused(error, &tried),
            };
            let node = lease.node().clone();
            let target = node.url_for(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
            parts.uri = match target {
                Ok(uri) => uri,
                Err(_) => return Err(HttpError::HttpRequestUriInvalid),
            };
            let outcome = self.client.send_once(&parts, body.clone(), deadline, lease).await;
            let failed = match &outcome {
                Ok(response) => response.status().is_server_error(),
                Err(error) => matches!(
                    error,
                    HttpError::ConnectionRefused
                        | HttpError::ConnectionTerminated
                        | HttpError::ConnectionReadTimeout
                ),
            };
            if !failed {
                pool.succeeded(&node);
                *served_by.lock().unwrap_or_else(|poison| poison.into_inner()) =
                    Some(Arc::from(node.spec.name.as_str()));
                return Ok(outcome?.map(|body| body.boxed_unsync()));
            }
            pool.failed(&node);
            let reason = match &outcome {
                Ok(response) => format!("status {}", response.status().as_u16()),
                Err(error) => error.to_string(),
            };
            tried.push(node.clone());
            let moves_left = tried.len() <= self.retry_attempts as usize;
            tracing::warn!(cap = "backend", node = %node.spec.name, %reason, moving = moves_left, "backend node failed a call");
            if !moves_left || Instant::now() >= deadline {
                return Ok(outcome?.map(|body| body.boxed_unsync()));
            }
        }
    }
}

/// What the component gets when no node can take the call.
fn refused(
    error: RouteError,
    tried: &[Arc<super::pool::node::Node>],
) -> Result<http::Response<WasiBody>, HttpError> {
    match error {
        RouteError::NoSuchModel(model) => Ok(synthesized(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": format!("model '{model}' not found")}),
        )),
        RouteError::AllDown(model) => {
            let what = if tried.is_empty() { "is down" } else { "failed or is down" };
            let message = format!("every backend node that serves '{model}' {what}");
            Ok(synthesized(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"error": message})))
        }
        RouteError::QueueFull => {
            tracing::warn!(cap = "backend", "no backend slot: the queue is full");
            Err(HttpError::ConnectionLimitReached)
        }
        RouteError::Deadline => Err(HttpError::ConnectionTimeout),
    }
}

/// A JSON answer made by the host.
fn synthesized(status: StatusCode, value: &serde_json::Value) -> http::Response<WasiBody> {
    let body = Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}).boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}
