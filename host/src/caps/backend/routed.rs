//! A component's backend call when there are several nodes ([`super::pool`]).
//!
//! - The merged listings (`GET /api/tags`, `/api/ps`, `/v1/models`) are
//!   answered by the host from the nodes' last refresh.
//! - Any other call names its node by the `model` of its JSON body (a call
//!   without one may go to any node), and the protocol by its path (`/v1/`
//!   calls may go to any node: Ollama answers them too).
//! - The chosen node gets the call once. A connection failure, a 5xx
//!   answer, no first byte within half the time left (when another node
//!   could take the call), or a 2xx answer that is junk at first look
//!   ([`answer`]) counts against the node's breaker and moves the call to
//!   another node that offers the model, up to OLLAMA_RETRY_ATTEMPTS moves
//!   and never past the deadline.
//! - A 4xx answer to a POST gets a second opinion from another node that
//!   offers the model: if that one answers, the first node is counted as
//!   failing (a node that refuses what others serve is an outlier); if it
//!   refuses too, the first answer is the client's (relayed, no node
//!   blamed). One second opinion per call.
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
use super::client::{Framing, GuardedBody};
use super::pool::answer::{self, JudgedLease, ReadAhead, Verdict};
use super::pool::node::{Node, Probe, Protocol};
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
        let protocol = Protocol::needed_for(&path);
        let call = Call { judged: parts.method == Method::POST, required: answers_required(&path) };
        // The node's own Host, not the one the component addressed.
        parts.headers.remove(http::header::HOST);
        let mut tried = Vec::new();
        // A 4xx held while another node gives its second opinion.
        let mut disputed: Option<(Arc<Node>, http::Response<WasiBody>)> = None;
        loop {
            let lease = match pool.route(model, protocol, key, &tried, deadline).await {
                Ok(lease) => lease,
                Err(error) => return disputed.map_or_else(|| refused(error, &tried), |(_, held)| Ok(held)),
            };
            let node = lease.node().clone();
            let target = node.url_for(parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
            parts.uri = match target {
                Ok(uri) => uri,
                Err(_) => return Err(HttpError::HttpRequestUriInvalid),
            };
            // With another node to move to, a node that hangs must leave it
            // time: half of what is left.
            tried.push(node.clone());
            let now = Instant::now();
            let first_byte_by = match pool.has_spare(model, protocol, &tried) {
                true => now + deadline.saturating_duration_since(now) / 2,
                false => deadline,
            };
            let verdict = Verdict::new(&lease);
            let guard =
                JudgedLease::new(lease, verdict.clone(), path == "/api/generate" || path == "/api/chat");
            let outcome = self.client.send_once(&parts, body.clone(), first_byte_by, deadline, guard).await;
            let (why, answer) = match outcome {
                Err(
                    error @ (HttpError::ConnectionRefused
                    | HttpError::ConnectionTerminated
                    | HttpError::ConnectionReadTimeout),
                ) => (error.to_string(), Err(error)),
                Err(error) => return Err(error),
                Ok(response) if response.status().is_server_error() => {
                    (format!("status {}", response.status().as_u16()), Ok(boxed(response)))
                }
                Ok(response) if response.status().is_client_error() && call.judged => {
                    if disputed.is_some() {
                        // Two nodes refused it: the client's mistake.
                        return Ok(disputed.map_or_else(|| boxed(response), |(_, held)| held));
                    }
                    disputed = Some((node, held(response, deadline).await?));
                    continue;
                }
                Ok(response) => match call.judge(response, &verdict).await {
                    Ok(good) => {
                        if let Some((refuser, _)) = disputed.take() {
                            let status = "a 4xx to a call another node answered";
                            tracing::warn!(cap = "backend", node = %refuser.spec.name, why = status, "backend node answered badly");
                            pool.failed(&refuser, Probe::Call);
                        }
                        *served_by.lock().unwrap_or_else(|poison| poison.into_inner()) =
                            Some(Arc::from(node.spec.name.as_str()));
                        return Ok(good);
                    }
                    Err((why, answer)) => (why, answer),
                },
            };
            verdict.bad(&why);
            let moves_left = tried.len() <= self.retry_attempts as usize;
            tracing::warn!(cap = "backend", node = %node.spec.name, reason = %why, moving = moves_left, "backend node failed a call");
            if !moves_left || Instant::now() >= deadline {
                return answer;
            }
        }
    }
}

/// What a node's answer to a call must be.
struct Call {
    /// A POST: a 2xx answer is judged, a 4xx gets a second opinion.
    judged: bool,
    /// Its 2xx answer may not be empty (a generation, an embedding).
    required: bool,
}

impl Call {
    /// Takes the first look at a non-error answer (see [`answer`]): the
    /// answer to give on, or why it is junk and what to give if no other
    /// node can be asked.
    async fn judge(
        &self,
        response: http::Response<GuardedBody>,
        verdict: &Verdict,
    ) -> Result<http::Response<WasiBody>, (String, Result<http::Response<WasiBody>, HttpError>)> {
        if !self.judged || !response.status().is_success() {
            verdict.good();
            return Ok(boxed(response));
        }
        let (head, body) = response.into_parts();
        let framing = Framing::of(&head.headers);
        if framing == Framing::Whole {
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => return Err(("its answer broke off".into(), Err(error))),
            };
            let rebuilt = || http::Response::from_parts(head.clone(), full(bytes.clone()));
            return match answer::whole(&bytes, self.required) {
                Ok(()) => {
                    verdict.good();
                    Ok(rebuilt())
                }
                Err(why) => Err((why, Ok(rebuilt()))),
            };
        }
        // A stream: judged as it passes (its lease's guard); its first line
        // now, so junk there can still move.
        match ReadAhead::first_line(body, framing).await {
            Ok(read) => Ok(http::Response::from_parts(head, read.boxed_unsync())),
            Err((why, Some(error))) => Err((why, Err(error))),
            Err((why, None)) => {
                let junk =
                    serde_json::json!({"error": format!("the backend node's answer is unreadable: {why}")});
                Err((why, Ok(synthesized(StatusCode::BAD_GATEWAY, &junk))))
            }
        }
    }
}

/// Whether a 2xx answer to `path` must have a body.
fn answers_required(path: &str) -> bool {
    path.starts_with("/v1/")
        || matches!(path, "/api/generate" | "/api/chat" | "/api/embed" | "/api/embeddings")
}

/// `response` read whole (a 4xx is small), to be given later.
async fn held(
    response: http::Response<GuardedBody>,
    deadline: Instant,
) -> Result<http::Response<WasiBody>, HttpError> {
    let (head, body) = response.into_parts();
    match tokio::time::timeout_at(deadline.into(), body.collect()).await {
        Ok(Ok(collected)) => Ok(http::Response::from_parts(head, full(collected.to_bytes()))),
        Ok(Err(error)) => Err(error),
        Err(_elapsed) => Err(HttpError::ConnectionReadTimeout),
    }
}

fn boxed(response: http::Response<GuardedBody>) -> http::Response<WasiBody> {
    response.map(|body| body.boxed_unsync())
}

fn full(bytes: Bytes) -> WasiBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
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
    let mut response = http::Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}
