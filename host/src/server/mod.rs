//! The HTTP listener: accepts connections (HTTP/1.1, keep-alive), applies
//! admission control and hands each admitted request to the handler.
//!
//! Admission, in order: the body is read first, under its own
//! `body_read_timeout` (408) and `max_body_bytes` (413, from
//! `Content-Length` before reading, or while reading a chunked body), by at
//! most `max_in_flight` readers at once, and without an in-flight slot, so
//! clients trickling bodies never hold the slots that other requests (or
//! GET /health, which has no body to read) need; then an exact repeat that
//! the edge tier keeps a replay for is answered at once, without a slot
//! ([`crate::caps::edge`]); then more than `max_in_flight` requests in the
//! service → 503 with `Retry-After`. Every answer carries `Cache-Status`. Every
//! error the host produces itself is JSON, `{"error": "..."}`. Connections
//! live under [`crate::listener`]'s limits. On shutdown the listener closes
//! at once and in-flight requests get a grace period.

mod read_body;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::answers::busy;
pub use crate::answers::{json_error, json_response};
use crate::caps::HostCapabilities;
use crate::caps::backend::ServedBy;
use crate::caps::cache::LookupTrace;
use crate::caps::edge::cache_status;
use crate::caps::edge::replay::Fills;
use crate::keys::limits::Quota;
use crate::keys::refusal::add_quota_headers;
use crate::keys::{Admitted, ClientKeys, Refusal};
use crate::listener::{Accepted, ConnectionLimits, accept_loop};
use crate::request_id::{REQUEST_ID, client_request_id, request_id};
use crate::routing::RoutingKey;
use crate::runtime::handler::{InvokeError, Ticket};
use crate::runtime::reuse::{IdleCount, InstanceSlot};
use crate::runtime::versions::{HandlerVersion, HandlerVersions};
use crate::traces::{self, spans};

/// The header naming the handler version that answered.
const HANDLER_VERSION: &str = "x-handler-version";
/// The header naming the backend node that answered (several nodes only).
const BACKEND_NODE: &str = "x-backend-node";
/// The handler's own word on the cache (`HIT`, `MISS`, ...).
const X_CACHE: &str = "x-cache";
/// RFC 9211's header naming the cache tier that answered.
const CACHE_STATUS: &str = cache_status::HEADER;
/// Liveness: the process serves requests.
pub const LIVENESS_PATH: &str = "/livez";
/// Readiness: the handler is loaded and a request would be admitted.
pub const READINESS_PATH: &str = "/readyz";

/// One client connection.
struct Connection {
    slot: InstanceSlot,
}

/// Everything a request needs, shared by all connections.
pub struct Service {
    versions: Arc<HandlerVersions>,
    capabilities: HostCapabilities,
    in_flight: Arc<Semaphore>,
    /// Requests whose body is being read.
    body_readers: Arc<Semaphore>,
    max_body_bytes: u64,
    body_read_timeout: Duration,
    request_timeout: Duration,
    idle: Arc<IdleCount>,
    keys: Arc<ClientKeys>,
}

/// Admission limits.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Requests in the service at once.
    pub max_in_flight: u32,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// How long a request may take.
    pub request_timeout: Duration,
}

impl Service {
    /// A service answering with `handler` under `admission`.
    pub fn new(versions: Arc<HandlerVersions>, capabilities: HostCapabilities, admission: Admission) -> Self {
        Self {
            versions,
            capabilities,
            in_flight: Arc::new(Semaphore::new(admission.max_in_flight as usize)),
            body_readers: Arc::new(Semaphore::new(admission.max_in_flight as usize)),
            max_body_bytes: admission.max_body_bytes,
            body_read_timeout: admission.body_read_timeout,
            request_timeout: admission.request_timeout,
            idle: Arc::default(),
            keys: Arc::new(ClientKeys::off()),
        }
    }

    /// The same service, admitting requests by `keys`.
    pub fn with_keys(mut self, keys: Arc<ClientKeys>) -> Self {
        self.keys = keys;
        self
    }

    /// A new connection: where it keeps its instance between requests.
    fn connection(&self) -> Connection {
        Connection { slot: InstanceSlot::new(self.idle.clone()) }
    }

    async fn handle(
        &self,
        request: hyper::Request<Incoming>,
        connection: &Connection,
    ) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let metrics = self.capabilities.telemetry.metrics();
        let _in_flight = metrics.enter();
        let path = request.uri().path().to_string();
        let response = self.answer(request, connection, true, |request| self.read_body(request)).await;
        metrics.record_request(&path, response.status().as_u16(), started.elapsed());
        response
    }

    /// Answers a request whose body is already read, from inside the
    /// process (the admin API's `/service/...`): the same probes, admission
    /// and handler as on the public port, but not counted in its request
    /// metrics, so an operator's console polling /health does not show up
    /// as client traffic.
    pub async fn handle_in_process(
        &self,
        request: hyper::Request<Bytes>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let within_limit = |request: hyper::Request<Bytes>| {
            let size = request.body().len() as u64;
            std::future::ready(if size > self.max_body_bytes { Err(self.too_large()) } else { Ok(request) })
        };
        // The admin token already admitted it: no client key is asked for.
        self.answer(request, &self.connection(), false, within_limit).await
    }

    /// The probes, else `read` the body and admit the request; tags the
    /// answer with its request id.
    async fn answer<B, Read>(
        &self,
        request: hyper::Request<B>,
        connection: &Connection,
        keyed: bool,
        read: impl FnOnce(hyper::Request<B>) -> Read,
    ) -> hyper::Response<HyperOutgoingBody>
    where
        Read: Future<Output = Result<hyper::Request<Bytes>, hyper::Response<HyperOutgoingBody>>>,
    {
        let request_id = request_id(request.headers());
        // Probes are answered untraced: an orchestrator's polling is no trace.
        let (mut response, span) = match self.probe(request.method(), request.uri().path()) {
            Some(answer) => (answer, None),
            None => {
                let span = spans::request(request.method(), request.uri().path(), request.headers());
                span.record("llm_service.request_id", &*request_id);
                let answered = async {
                    match read(request).instrument(spans::read_body()).await {
                        Ok(request) => match self.tenant(&request, keyed).await {
                            Ok((tenant, quota)) => {
                                let mut response =
                                    self.admit(request, request_id.clone(), connection, tenant).await;
                                add_quota_headers(response.headers_mut(), &quota);
                                response
                            }
                            Err(refusal) => refusal.response(request.uri().path()),
                        },
                        Err(refused) => refused,
                    }
                };
                (answered.instrument(span.clone()).await, Some(span))
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        // Answers the host gives itself (probes, refusals) involve no cache.
        response.headers_mut().entry(CACHE_STATUS).or_insert(cache_status::BYPASS);
        match span {
            Some(span) => {
                let tier = response.headers().get(CACHE_STATUS).map(cache_status::tier);
                spans::held_open(response, span, tier)
            }
            None => response,
        }
    }

    /// The orchestrator's probes, answered by the host itself (no slot, no
    /// component): `/livez` while the process serves at all, `/readyz`
    /// while it can admit a request. Neither depends on the model backend:
    /// a gateway whose backend is down still serves its cache, so it must
    /// not be restarted or taken out of rotation for that (`/health` keeps
    /// the seed's meaning and says 503 then).
    fn probe(&self, method: &http::Method, path: &str) -> Option<hyper::Response<HyperOutgoingBody>> {
        if !matches!(*method, http::Method::GET | http::Method::HEAD) {
            return None;
        }
        match path {
            LIVENESS_PATH => Some(json_response(StatusCode::OK, &serde_json::json!({"status": "alive"}))),
            READINESS_PATH => Some(if self.in_flight.available_permits() > 0 {
                let handler = self.versions.current();
                json_response(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ready", "handler": handler.tag()}),
                )
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({"status": "not ready", "reason": "every in-flight slot is taken (MAX_IN_FLIGHT)"}),
                )
            }),
            _ => None,
        }
    }

    async fn admit(
        &self,
        mut request: hyper::Request<Bytes>,
        request_id: Arc<str>,
        connection: &Connection,
        tenant: Option<Admitted>,
    ) -> hyper::Response<HyperOutgoingBody> {
        let started = Instant::now();
        let routing_key = RoutingKey::of(client_request_id(request.headers()), request.body(), &request_id);
        // The version is picked once and held to the end of the request.
        let version = self.versions.pick(routing_key);
        let tag = HeaderValue::from_str(version.tag()).ok();
        let namespace = tenant.as_ref().map_or("", |tenant| &*tenant.namespace);
        let edge = self.capabilities.edge.ticket(
            namespace,
            version.tag(),
            request.method().as_str(),
            request.uri().path_and_query().map_or("/", |path| path.as_str()),
            request.body(),
        );
        // An exact repeat the handler offered a replay for: answered here,
        // without an in-flight slot (it enters no component).
        let replay = edge.as_ref().and_then(|ticket| {
            let looking = spans::edge_lookup();
            let replay = looking.in_scope(|| self.capabilities.edge.lookup(ticket, request.headers()));
            looking.record("llm_service.edge.hit", replay.is_some());
            replay
        });
        let root = traces::exporting().then(tracing::Span::current);
        if let Some(root) = &root {
            root.record("llm_service.handler.version", version.tag());
        }
        if let Some(replay) = replay {
            let mut response = replay.response(Fills { request_id: &request_id, started });
            let endpoint = crate::caps::telemetry::metrics::endpoint_label(request.uri().path());
            self.capabilities
                .telemetry
                .for_replay(request_id, version.component.shared_tag(), endpoint, routing_key, tenant)
                .report(&replay.report, started.elapsed().as_secs_f64());
            self.record_answer(&version, response.status().as_u16(), started.elapsed(), false);
            let headers = response.headers_mut();
            headers.insert(CACHE_STATUS, cache_status::EDGE);
            if let Some(tag) = tag {
                headers.insert(HANDLER_VERSION, tag);
            }
            return response;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return busy("the service is at its in-flight request limit; retry shortly");
        };
        // HTTP/1.0 allows a request without Host (HAProxy's default health
        // check sends one); wasi:http needs an authority, so name ourselves.
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            request.headers_mut().insert(header::HOST, HeaderValue::from_static("localhost"));
        }
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let (served_by, trace) = (ServedBy::default(), LookupTrace::default());
        let endpoint = crate::caps::telemetry::metrics::endpoint_label(&path);
        let span = spans::handler_call(version.tag(), self.versions.is_canary(&version), endpoint);
        let ticket = Ticket {
            span: span.clone(),
            tenant,
            request_id: request_id.clone(),
            routing_key,
            timeout: self.request_timeout,
            served_by: served_by.clone(),
            edge,
            trace: trace.clone(),
        };
        let outcome = version
            .component
            .serve(request.map(Full::new), &self.capabilities, ticket, permit, &connection.slot)
            .await;
        let trapped = matches!(outcome, Err(InvokeError::Trap { .. }));
        let mut response = match outcome {
            Ok(response) => response,
            Err(error) => {
                let status = error.status();
                let guest_output = match &error {
                    InvokeError::Trap { guest_output, .. } => Some(guest_output.as_str()),
                    _ => None,
                };
                let (trace_id, span_id) = traces::ids(&span).unzip();
                tracing::warn!(cap = "handler", %method, %path, %request_id, handler_version = version.tag(), status = status.as_u16(), %error, guest_output, trace_id = trace_id.as_deref(), span_id = span_id.as_deref(), "request failed in the handler");
                match &error {
                    // A trap's text is the guest's internals (a wasm
                    // backtrace): it goes to the log, the client gets the id.
                    InvokeError::Trap { .. } => json_response(
                        status,
                        &serde_json::json!({
                            "error": "the handler failed; the service log has the details under this request_id",
                            "request_id": &*request_id,
                        }),
                    ),
                    _ => json_error(status, &error.to_string()),
                }
            }
        };
        self.record_answer(&version, response.status().as_u16(), started.elapsed(), trapped);
        if let Some(tag) = tag {
            response.headers_mut().insert(HANDLER_VERSION, tag);
        }
        let status = cache_status::of(response.headers().get(X_CACHE), trace.latest());
        let tier = cache_status::tier(&status);
        response.headers_mut().insert(CACHE_STATUS, status);
        let node = served_by.lock().unwrap_or_else(|poison| poison.into_inner()).clone();
        spans::handler_answered(&span, root.as_ref(), response.status(), tier, node.as_deref());
        if let Some(node) = node.and_then(|node| HeaderValue::from_str(&node).ok()) {
            response.headers_mut().insert(BACKEND_NODE, node);
        }
        response
    }

    /// The tenant of `request` (`None`: the default tenant, as is every
    /// request the admin API forwards, `keyed` false) and what its key has
    /// left, or why its key is refused.
    async fn tenant(
        &self,
        request: &hyper::Request<Bytes>,
        keyed: bool,
    ) -> Result<(Option<Admitted>, Quota), Refusal> {
        if !keyed {
            return Ok((None, Quota::default()));
        }
        self.keys.admit_request(request, || self.capabilities.telemetry.current_model()).await
    }

    /// Counts an answer for its version, and for the canary's verdict.
    fn record_answer(&self, version: &Arc<HandlerVersion>, status: u16, latency: Duration, trapped: bool) {
        let metrics = self.capabilities.telemetry.rollout_metrics();
        metrics.record_answer(version.tag(), status, latency);
        if let Some(reason) = self.versions.record(version, status, latency, trapped) {
            metrics.record_canary_drop(reason.label());
        }
    }
}

/// Time the answers cut at the grace period's end have to say so.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// Serves `listener` under `limits` until `shutdown` completes, then waits
/// up to `grace` for in-flight requests; past it, `grace_over` cuts what
/// they still read from the backend and they get [`LAST_WORDS`] to end
/// their answers with their dialect's error. Returns whether every
/// connection drained within the grace period.
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    grace_over: impl FnOnce(),
) -> bool {
    let graceful = GracefulShutdown::new();
    let builder = limits.http1();
    accept_loop("service", listener, limits, shutdown, |Accepted { stream, peer, permit, shed }| {
        let (service, connection) = (service.clone(), Arc::new(service.connection()));
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request| {
                let (service, connection) = (service.clone(), connection.clone());
                async move { Ok::<_, Infallible>(service.handle(request, &connection).await) }
            }),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _counted = permit;
            tokio::select! {
                ended = connection => if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                },
                () = shed.wait() => tracing::debug!(%peer, "silent connection shed: the cap is full"),
            }
        });
    })
    .await;
    tracing::info!(grace_s = grace.as_secs(), "shutting down: listener closed, draining in-flight requests");
    let drained = graceful.shutdown();
    tokio::pin!(drained);
    if tokio::time::timeout(grace, drained.as_mut()).await.is_ok() {
        return true;
    }
    grace_over();
    let _ = tokio::time::timeout(LAST_WORDS, drained).await;
    false
}

/// The quality checks' probes go through the service as a client's would.
#[async_trait::async_trait]
impl crate::rollout::quality::AnswersInProcess for Service {
    async fn answer(&self, request: hyper::Request<Bytes>) -> hyper::Response<HyperOutgoingBody> {
        self.handle_in_process(request).await
    }
}
