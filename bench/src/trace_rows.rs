//! Rows 13 and 14: what traces cost. Row 3's hit and row 5's miss with
//! every request traced (`OTEL_TRACES_SAMPLER=always_on`) to a local OTLP
//! receiver that decodes each export and counts its spans; the notes
//! compare with rows 3 and 5 (traces off) of the same run and say how
//! many spans were exported and dropped.

use std::path::Path;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::otlp::OtlpReceiver;
use tokio::runtime::Runtime;

use crate::load::{self, Target};
use crate::scenarios::{MODEL, Plan, Row, added_latency_with, cached_request, once, settings};
use crate::service::ServiceProcess;

/// The settings that trace every request to `sink`.
fn traced(sink: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url()),
        ("OTEL_TRACES_SAMPLER", "always_on".into()),
        // Under load a full batch (512 spans) goes at once anyway; the
        // short delay makes a smoke run's few spans leave before it ends.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

/// What became of the service's spans, from its /metrics/prometheus.
fn span_outcomes(service: &ServiceProcess, runtime: &Runtime) -> anyhow::Result<String> {
    let (_, body) = runtime.block_on(once(&Target::get(service.addr, "/metrics/prometheus")))?;
    let text = String::from_utf8_lossy(&body);
    let count = |outcome: &str| {
        let series = format!("llm_service_trace_spans_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(series.as_str())).unwrap_or("0").to_string()
    };
    Ok(format!(
        "spans exported {}, dropped {} (queue full) + {} (export failed)",
        count("exported"),
        count("dropped_queue_full"),
        count("dropped_export_failed")
    ))
}

/// Row 13: row 3 traced; `untraced` is row 3's throughput.
pub fn traced_hit(plan: &Plan, work: &Path, runtime: &Runtime, untraced: Option<f64>) -> anyhow::Result<Row> {
    let (ollama, sink) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start_counting());
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.extend(traced(&sink));
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join("traced-hit.log"))?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    let report = runtime.block_on(async {
        once(&hit).await?;
        anyhow::Ok(load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await)
    })?;
    let against = untraced
        .map_or(String::new(), |plain| format!("{:.2} of row 3's throughput; ", report.throughput() / plain));
    let notes =
        format!("{against}{}; the sink decoded {}", span_outcomes(&service, runtime)?, sink.counted());
    Ok(Row::from_report("/generate cache hit (L1), every request traced", &report, notes))
}

/// Row 14: row 5 traced (its notes give the added latency, as row 5's do).
pub fn traced_miss(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let sink = OtlpReceiver::start_counting();
    let scenario = "/generate miss, fake Ollama 20 ms, fixed rate, every request traced";
    let row = added_latency_with(plan, work, runtime, scenario, &traced(&sink))?;
    anyhow::ensure!(sink.counted() > 0, "no span reached the sink");
    Ok(row)
}
