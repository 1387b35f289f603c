//! W3C Trace Context across the gateway: a client's `traceparent` and
//! `tracestate` become the parent of the request's span, and every
//! backend call carries its own span's, so the model server's spans join
//! the same trace. Without an exporter both are no-ops (nothing is read,
//! nothing is added), so a client's headers pass through untouched.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the trace a client sent in `headers` the parent of `span`.
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if !super::exporting() || span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
}

/// Writes `span`'s trace into `headers` (replacing a client's, which
/// [`continue_from`] already made its ancestor).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !super::exporting() || span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}
