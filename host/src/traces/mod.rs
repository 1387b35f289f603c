//! Distributed traces in OpenTelemetry's terms, exported over OTLP/HTTP.
//!
//! Spans are named `llm_service.<capability>.<operation>` and made at the
//! seams: the request (continuing a client's W3C `traceparent`), admission,
//! the handler call (the generation span, with the GenAI conventions'
//! attributes), cache lookups and lands, the backend call (which carries
//! the gateway's span to the model server) and plugin calls.
//!
//! Guarantees:
//! - Off unless an OTLP endpoint is set: then no span layer is installed
//!   and every span here is a DEBUG span the log filter already turned
//!   away at its callsite, so a request pays one cached-interest check per
//!   seam and nothing else.
//! - On, a request never waits on the receiver: finished spans go through
//!   a bounded queue ([`export`]), and what is dropped is counted.
//! - Prompts and answers reach a span only with OTEL_GENAI_CAPTURE_CONTENT.
//! - What a handler adds to its span is bounded ([`handler_span`]).

pub mod config;
pub mod export;
pub mod genai;
pub mod handler_span;
pub mod propagate;
pub mod spans;

use std::sync::OnceLock;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use self::config::{SamplerName, TraceConfig};
use self::export::{Batching, ExportTask, SpanCounts};

/// The target of every span here (the log filter's and the exporter's).
pub const TARGET: &str = "llm_service::spans";

/// Set once when traces are on.
static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// What is known once traces are on.
#[derive(Debug)]
struct Exporting {
    capture_content: bool,
    counts: SpanCounts,
    /// Kept so the tracer's provider lives as long as the process.
    _provider: SdkTracerProvider,
}

/// Whether spans are exported (an endpoint is set).
pub fn exporting() -> bool {
    EXPORTING.get().is_some()
}

/// Whether prompts and answers may go on spans.
pub fn capture_content() -> bool {
    EXPORTING.get().is_some_and(|exporting| exporting.capture_content)
}

/// What became of the spans, when traces are on.
pub fn counts() -> Option<SpanCounts> {
    EXPORTING.get().map(|exporting| exporting.counts.clone())
}

/// Whether `span` is part of a trace that is kept.
pub fn sampled(span: &tracing::Span) -> bool {
    exporting() && !span.is_disabled() && span.context().span().span_context().is_sampled()
}

/// `span`'s trace and span ids in hex, for log lines, when it is traced.
pub fn ids(span: &tracing::Span) -> Option<(String, String)> {
    if !sampled(span) {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    Some((span_context.trace_id().to_string(), span_context.span_id().to_string()))
}

/// The layer that turns this service's spans into OpenTelemetry spans, and
/// the export task to start on the runtime; `None` when no endpoint is set.
/// Fails on a configuration the exporter refuses.
pub fn layer<S>(config: &TraceConfig) -> Result<Option<(impl tracing_subscriber::Layer<S>, Pending)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer as _;
    let Some(url) = config.traces_url() else { return Ok(None) };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(config.export_timeout())
        // A failed export is counted and its batch dropped; the next one
        // carries newer spans (retrying would only back the queue up).
        .with_retry_policy(RetryPolicy::disabled())
        .build()
        .map_err(|error| format!("the OTLP exporter for {url}: {error}"))?;
    let resource = Resource::builder().with_service_name(config.otel_service_name.clone()).build();
    let batching = Batching {
        queue: config.otel_bsp_max_queue_size as usize,
        batch: config.otel_bsp_max_export_batch_size as usize,
        every: config.schedule_delay(),
        timeout: config.export_timeout(),
    };
    let (processor, task) = export::queue(exporter, &resource, batching);
    let counts = processor.counts();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(config))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("llm-service");
    let _ = EXPORTING.set(Exporting {
        capture_content: config.otel_genai_capture_content,
        counts,
        _provider: provider,
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_tracked_inactivity(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span() && meta.target() == TARGET));
    Ok(Some((layer, Pending { task, url })))
}

/// The export task, made before the runtime exists.
pub struct Pending {
    task: ExportTask<opentelemetry_otlp::SpanExporter>,
    url: String,
}

impl Pending {
    /// Starts exporting on the current runtime; its counts join `registry`.
    pub fn start(self, registry: &prometheus::Registry) -> export::Flush {
        if let Some(counts) = counts() {
            counts.register(registry);
        }
        tracing::info!(cap = "traces", url = %self.url, "exporting traces over OTLP/HTTP");
        self.task.start()
    }
}

fn sampler(config: &TraceConfig) -> Sampler {
    let ratio = config.otel_traces_sampler_arg;
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match config.otel_traces_sampler {
        SamplerName::AlwaysOn => Sampler::AlwaysOn,
        SamplerName::AlwaysOff => Sampler::AlwaysOff,
        SamplerName::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        SamplerName::ParentbasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerName::ParentbasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerName::ParentbasedTraceidratio => parent_based(Sampler::TraceIdRatioBased(ratio)),
    }
}
