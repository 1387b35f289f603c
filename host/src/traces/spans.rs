//! The spans themselves, one constructor per seam, so every name and
//! field is written once. Each is a DEBUG span of [`TARGET`]: with traces
//! off, no layer wants it and the macro hands back a disabled span after
//! one cached-interest check, so recording into it costs nothing.
//!
//! Attribute names are OpenTelemetry's where it has one (HTTP, server,
//! error, GenAI), else `llm_service.*`.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame};
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::TARGET;

/// The span of one request on the service port (a client's trace, when it
/// sent one, is its parent).
pub fn request(method: &http::Method, path: &str, headers: &http::HeaderMap) -> Span {
    let span = tracing::debug_span!(
        target: TARGET, "llm_service.server.request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = path,
        http.response.status_code = Empty,
        otel.status_code = Empty,
        llm_service.request_id = Empty,
        llm_service.cache.tier = Empty,
        llm_service.handler.version = Empty,
        llm_service.backend.node = Empty,
    );
    super::propagate::continue_from(&span, headers);
    span
}

/// Reading a request's body, under its size and time bounds.
pub fn read_body() -> Span {
    tracing::debug_span!(target: TARGET, "llm_service.admission.read_body")
}

/// The edge tier's look for an exact repeat.
pub fn edge_lookup() -> Span {
    tracing::debug_span!(target: TARGET, "llm_service.edge.lookup", llm_service.edge.hit = Empty)
}

/// The handler component's call: the generation span, which the GenAI
/// attributes go on (from the host's report and from the handler itself).
pub fn handler_call(version: &str, canary: bool, endpoint: &'static str) -> Span {
    tracing::debug_span!(
        target: TARGET, "llm_service.handler.call",
        llm_service.handler.version = version,
        llm_service.handler.canary = canary,
        llm_service.endpoint = endpoint,
        llm_service.cache.tier = Empty,
        llm_service.flight.role = Empty,
        llm_service.backend.node = Empty,
        otel.status_code = Empty,
    )
}

/// A cache lookup (tier that answered, or the flight's role).
pub fn cache_lookup() -> Span {
    tracing::debug_span!(
        target: TARGET, "llm_service.cache.lookup",
        llm_service.cache.tier = Empty,
        llm_service.flight.role = Empty,
    )
}

/// A leader landing its answer in the tiers.
pub fn cache_land() -> Span {
    tracing::debug_span!(target: TARGET, "llm_service.cache.land", error.type = Empty)
}

/// One backend call, retries included, until its answer's body ends.
pub fn backend_send(method: &http::Method, uri: &http::Uri) -> Span {
    tracing::debug_span!(
        target: TARGET, "llm_service.backend.send",
        otel.kind = "client",
        http.request.method = %method,
        server.address = uri.host().unwrap_or_default(),
        server.port = uri.port_u16().map(i64::from),
        url.path = uri.path(),
        http.response.status_code = Empty,
        llm_service.backend.attempts = Empty,
        llm_service.backend.node = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// A prompt plugin's call.
pub fn plugin_call(plugin: &str, operation: &'static str) -> Span {
    tracing::debug_span!(
        target: TARGET, "llm_service.plugins.call",
        llm_service.plugin.name = plugin,
        llm_service.plugin.operation = operation,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// Records the answer on its request's span (a 5xx is an error; the cache
/// tier that answered is `cache_tier`) and keeps the span open until the
/// answer's body is sent.
pub fn held_open(
    response: http::Response<HyperOutgoingBody>,
    span: Span,
    cache_tier: Option<&'static str>,
) -> http::Response<HyperOutgoingBody> {
    if span.is_disabled() {
        return response;
    }
    span.record("http.response.status_code", i64::from(response.status().as_u16()));
    record_answer(&span, response.status(), cache_tier);
    response.map(|body| HeldOpen { body, span }.boxed_unsync())
}

/// Records on the handler's span (and the node on the request's, `root`)
/// what the host learnt once the handler answered with `status`, from the
/// cache tier `cache_tier`.
pub fn handler_answered(
    span: &Span,
    root: Option<&Span>,
    status: http::StatusCode,
    cache_tier: &'static str,
    node: Option<&str>,
) {
    if span.is_disabled() {
        return;
    }
    record_answer(span, status, Some(cache_tier));
    if let Some(node) = node {
        span.record("llm_service.backend.node", node);
        if let Some(root) = root {
            root.record("llm_service.backend.node", node);
        }
    }
}

fn record_answer(span: &Span, status: http::StatusCode, cache_tier: Option<&'static str>) {
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(tier) = cache_tier {
        span.record("llm_service.cache.tier", tier);
    }
}

/// Records the number `value` under `field` on the current span, when
/// traces are on (an `i64`: the exporter keeps integers only of that type).
pub fn record_current_number(field: &'static str, value: i64) {
    if super::exporting() {
        Span::current().record(field, value);
    }
}

/// Records a backend's answer on its call's span: `status`, from `node`.
pub fn backend_answered(span: &Span, status: http::StatusCode, node: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
    if let Some(node) = node {
        span.record("llm_service.backend.node", node);
    }
}

/// Records a backend call that got no answer.
pub fn backend_failed(span: &Span, error: &wasmtime_wasi_http::Error) {
    if span.is_disabled() {
        return;
    }
    span.record("error.type", tracing::field::display(error));
    span.record("otel.status_code", "ERROR");
}

/// Adds the event `name` to the current span, when traces are on.
pub fn event_current(name: &'static str) {
    if super::exporting() {
        Span::current().add_event(name, Vec::<KeyValue>::new());
    }
}

/// A span another one may link to (a flight's leader, for its followers).
#[derive(Debug, Clone)]
pub struct LinkTarget(SpanContext);

impl LinkTarget {
    /// The current span, when it is traced.
    pub fn current() -> Option<Self> {
        if !super::exporting() {
            return None;
        }
        let context = Span::current().context().span().span_context().clone();
        context.is_valid().then_some(Self(context))
    }

    /// Links `span` to this one.
    pub fn link(&self, span: &Span) {
        span.add_link(self.0.clone());
    }
}

/// A response body that keeps its request's span open until it is sent,
/// entering it on every poll: the exporter ends a span at its last exit,
/// so a stream's span covers the stream.
struct HeldOpen<B> {
    body: B,
    span: Span,
}

impl<B: Body + Unpin> Body for HeldOpen<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
