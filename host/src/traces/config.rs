//! The traces' settings, under OpenTelemetry's standard variable names, so
//! an operator's usual `OTEL_*` environment works unchanged.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// The OTLP/HTTP path of the traces signal, added to a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// Where and how spans are exported. Traces are off unless an endpoint is set.
#[derive(Debug, Clone, Args)]
pub struct TraceConfig {
    /// Base URL of an OTLP/HTTP receiver (a Collector, Jaeger, Tempo): spans go to its `/v1/traces` as protobuf. Unset (and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT unset): traces are off and cost nothing. OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES are read as the OpenTelemetry SDK reads them.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_http_url)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The full URL spans are posted to, instead of OTEL_EXPORTER_OTLP_ENDPOINT plus `/v1/traces`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_parser = parse_http_url)]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// The `service.name` every span carries.
    #[arg(long, env = "OTEL_SERVICE_NAME", value_name = "OTEL_SERVICE_NAME", default_value = "llm-service")]
    pub otel_service_name: String,
    /// Which traces are kept: the SDK's samplers by their standard names (`parentbased_*` follow a client's `traceparent` flag).
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        value_name = "OTEL_TRACES_SAMPLER",
        default_value = "parentbased_always_on"
    )]
    pub otel_traces_sampler: SamplerName,
    /// The ratio the `*traceidratio` samplers keep, from 0 to 1.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", value_name = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0, value_parser = parse_ratio)]
    pub otel_traces_sampler_arg: f64,
    /// Record prompts and answers on the generation span (`gen_ai.input.messages`, `gen_ai.output.messages`); off, no content leaves the process in a trace.
    #[arg(long, env = "OTEL_GENAI_CAPTURE_CONTENT", value_name = "OTEL_GENAI_CAPTURE_CONTENT", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub otel_genai_capture_content: bool,
    /// Finished spans waiting for export; past it, new spans are dropped and counted (`llm_service_trace_spans_total{outcome="dropped_queue_full"}`), never waited for.
    #[arg(long, env = "OTEL_BSP_MAX_QUEUE_SIZE", value_name = "OTEL_BSP_MAX_QUEUE_SIZE", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub otel_bsp_max_queue_size: u32,
    /// Milliseconds between two exports (sooner when a batch is full).
    #[arg(long, env = "OTEL_BSP_SCHEDULE_DELAY", value_name = "OTEL_BSP_SCHEDULE_DELAY", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub otel_bsp_schedule_delay: u64,
    /// Most spans in one export.
    #[arg(long, env = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value_name = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub otel_bsp_max_export_batch_size: u32,
    /// Milliseconds one export may take before it counts as failed.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", value_name = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub otel_exporter_otlp_timeout: u64,
}

/// The samplers of the OpenTelemetry specification, by their variable values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SamplerName {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of traces, by trace id (OTEL_TRACES_SAMPLER_ARG).
    Traceidratio,
    /// As the client's trace says; every new trace.
    ParentbasedAlwaysOn,
    /// As the client's trace says; no new trace.
    ParentbasedAlwaysOff,
    /// As the client's trace says; a share of new traces.
    ParentbasedTraceidratio,
}

impl TraceConfig {
    /// Where spans are posted, or `None`: traces are off.
    pub fn traces_url(&self) -> Option<String> {
        if let Some(url) = &self.otel_exporter_otlp_traces_endpoint {
            return Some(url.clone());
        }
        let base = self.otel_exporter_otlp_endpoint.as_deref()?;
        Some(format!("{}{TRACES_PATH}", base.trim_end_matches('/')))
    }

    /// The time between exports.
    pub fn schedule_delay(&self) -> Duration {
        Duration::from_millis(self.otel_bsp_schedule_delay)
    }

    /// The time one export may take.
    pub fn export_timeout(&self) -> Duration {
        Duration::from_millis(self.otel_exporter_otlp_timeout)
    }
}

/// An `http://` URL: this build speaks OTLP over plain HTTP (a Collector
/// beside it carries spans on over TLS).
fn parse_http_url(value: &str) -> Result<String, String> {
    let uri: http::Uri = value.parse().map_err(|error| format!("not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") if uri.authority().is_some() => Ok(value.to_string()),
        Some("https") => Err(
            "https is not built in: export to a Collector over http:// and let it carry spans on over TLS"
                .into(),
        ),
        _ => Err("expected http://host:port".into()),
    }
}

fn parse_ratio(value: &str) -> Result<f64, String> {
    let ratio: f64 = value.parse().map_err(|_| "expected a number from 0 to 1".to_string())?;
    if (0.0..=1.0).contains(&ratio) { Ok(ratio) } else { Err("expected a number from 0 to 1".into()) }
}
