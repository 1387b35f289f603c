//! tracing output: human-readable text, or one JSON object per line when
//! LOG_FORMAT=json. The level filter comes from RUST_LOG (default `info`).
//!
//! Without an OTLP endpoint the subscriber is exactly the log's, one
//! global filter, so traces off cost nothing. With one, the spans of
//! [`crate::traces`] go to their exporter under a filter of their own, so
//! RUST_LOG never turns traces on or off, and the trace's spans never
//! fill the log.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;
use crate::traces::config::TraceConfig;

/// Installs the global subscriber, writing to stderr; returns the trace
/// export task to start once the runtime runs, when traces are on.
/// Fails on a trace configuration the exporter refuses.
pub fn init(format: LogFormat, traces: &TraceConfig) -> Result<Option<crate::traces::Pending>, String> {
    // The trace's spans never show in the log, at any RUST_LOG level.
    let quiet_spans = format!("{}=off", crate::traces::TARGET).parse().map_err(|error| format!("{error}"))?;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(quiet_spans);
    let ansi = std::io::stderr().is_terminal();
    let Some((spans, pending)) = crate::traces::layer(traces)? else {
        let builder =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
        match format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
        return Ok(None);
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    tracing_subscriber::registry().with(fmt).with(spans).init();
    Ok(Some(pending))
}
