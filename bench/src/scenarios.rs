//! The scenarios, one table row each, in the order. Each starts
//! what it needs (the service, a fake Ollama, redis-server) and stops it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_server::RedisServer;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::load::{self, Report, Target};
use crate::native::NativeServer;
use crate::service::{ServiceProcess, scratch_directory};

pub const MODEL: &str = "llama3:8b-instruct-q5_K_M";
pub const ADMIN_TOKEN: &str = "bench-admin-token";

/// How hard and how long to push.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The llm-service binary.
    pub binary: PathBuf,
    /// The handler component the hot-swap row uploads.
    pub handler: PathBuf,
    /// The prompt plugin (serving "peter") the plugin row loads.
    pub plugin: PathBuf,
    /// Measured time per throughput row.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Connections of the fixed-concurrency rows.
    pub connections: usize,
    /// Requests per second of the added-latency row.
    pub rate: u32,
    /// Identical requests of the single-flight row.
    pub burst: usize,
    /// Swaps of the hot-swap row.
    pub swaps: usize,
    /// Starts of each kind in the cold-start row.
    pub starts: usize,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub scenario: String,
    /// Successful answers per second, for throughput rows.
    pub throughput: Option<f64>,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile.
    pub p99_ms: Option<f64>,
    /// What else the row found (errors, backend calls, ...).
    pub notes: String,
}

impl Row {
    /// A row for `report`, its errors first in the notes.
    pub fn from_report(scenario: &str, report: &Report, notes: String) -> Self {
        let errors = if report.errors == 0 { String::new() } else { format!("{} errors; ", report.errors) };
        Self {
            scenario: scenario.into(),
            throughput: Some(report.throughput()),
            p50_ms: Some(report.latency_ms(0.5)),
            p99_ms: Some(report.latency_ms(0.99)),
            notes: format!("{errors}{notes}").trim_end_matches("; ").to_string(),
        }
    }

    /// A row that could not run here, and why.
    pub fn skipped(scenario: &str, why: &str) -> Self {
        Self {
            scenario: scenario.into(),
            throughput: None,
            p50_ms: None,
            p99_ms: None,
            notes: format!("skipped: {why}"),
        }
    }
}

/// The body of the cached /generate the rows share.
pub fn cached_request() -> serde_json::Value {
    json!({"prompt": "Benchmark: say hello to the lighthouse keeper.", "character_name": "peter"})
}

/// The settings every row's service starts with. The edge tier is off, so
/// the hit rows measure the handler's own path; row 12 turns it on.
pub fn settings(ollama: &FakeOllama, compiled: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("OLLAMA_BASE_URL", ollama.url()),
        ("COMPILED_CACHE_DIR", compiled.display().to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("MAX_CONCURRENT_REQUESTS", "256".into()),
        ("EDGE_CACHE_MAX_BYTES", "0".into()),
    ]
}

/// The service for a row, sharing the run's compiled-component cache, its
/// log in `work/{name}.log`.
fn start_service(
    plan: &Plan,
    ollama: &FakeOllama,
    work: &Path,
    name: &str,
) -> anyhow::Result<ServiceProcess> {
    let settings = settings(ollama, &work.join("compiled"));
    ServiceProcess::start(&plan.binary, &settings, &work.join(format!("{name}.log")))
}

/// Sends one request and returns the answer's head and body.
pub async fn once(target: &Target) -> anyhow::Result<(http::response::Parts, Bytes)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (head, body) = client.request(target.request()).await?.into_parts();
    Ok((head, body.collect().await?.to_bytes()))
}

/// Rows 1 to 3: the native ceiling, /health and the L1 cache hit, on one
/// service.
pub fn fast_paths(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Vec<Row>> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = start_service(plan, &ollama, work, "fast")?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    let (native_report, health, hits, body) = runtime.block_on(async {
        once(&hit).await?;
        let (head, body) = once(&hit).await?;
        let cached = head.headers.get("x-cache").is_some_and(|value| value == "HIT");
        anyhow::ensure!(cached, "the warm-up request was not cached");
        let native = NativeServer::start(head.headers.clone(), body.clone()).await?;
        let native_target = Target::post(native.addr, "/generate", &cached_request());
        let run = |target: Target| async move {
            load::fixed_concurrency(&target, plan.connections, plan.warmup, plan.duration).await
        };
        let native_report = run(native_target).await;
        let health = run(Target::get(service.addr, "/health")).await;
        let hits = run(hit.clone()).await;
        anyhow::Ok((native_report, health, hits, body))
    })?;
    Ok(vec![
        Row::from_report(
            "native hyper, the cached /generate's bytes",
            &native_report,
            format!("{} bytes", body.len()),
        ),
        Row::from_report("GET /health through the component", &health, String::new()),
        Row::from_report("/generate cache hit (L1, in process)", &hits, String::new()),
    ])
}

/// Row 4: the cache hit with the in-process tier off, every hit from KeyDB.
pub fn keydb_hit(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let scenario = "/generate cache hit from KeyDB (L1 off)";
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        return Ok(Row::skipped(scenario, "no redis-server"));
    }
    let redis = RedisServer::start();
    let ollama = FakeOllama::start(&[MODEL]);
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.extend([("REDIS_URL", redis.url()), ("CACHE_MAX_SIZE", "0".into())]);
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join("keydb.log"))?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    let report = runtime.block_on(async {
        once(&hit).await?;
        anyhow::Ok(load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await)
    })?;
    Ok(Row::from_report(scenario, &report, format!("{} answer keys in KeyDB", redis.answer_count())))
}

/// Row 5: what the gateway adds to a generation, at a fixed rate, against
/// the fake Ollama (20 ms per answer) called directly, the two interleaved.
pub fn added_latency(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    added_latency_with(plan, work, runtime, "/generate miss, fake Ollama 20 ms, fixed rate", &[])
}

/// Row 5's measurement, for a service started with `extra` settings too.
pub fn added_latency_with(
    plan: &Plan,
    work: &Path,
    runtime: &Runtime,
    scenario: &str,
    extra: &[(&'static str, String)],
) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(20));
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.extend(extra.iter().cloned());
    let log = work.join(format!("latency-{}.log", extra.len()));
    let service = ServiceProcess::start(&plan.binary, &settings, &log)?;
    let prompt = "Benchmark: a miss every time";
    let through = Target::post(
        service.addr,
        "/generate",
        &json!({"prompt": prompt, "use_cache": false, "settings": {"max_tokens": 8}}),
    );
    runtime.block_on(once(&through))?;
    let direct_body = ollama.generate_requests().pop();
    let direct_body = direct_body.ok_or_else(|| anyhow::anyhow!("the fake Ollama saw no generation"))?;
    let direct =
        Target::post(ollama.url().trim_start_matches("http://").parse()?, "/api/generate", &direct_body);
    // Both at `rate` in all, taken in turn: each gets half, at the same moments.
    let mut reports =
        runtime.block_on(load::fixed_rate(&[through, direct], plan.rate * 2, plan.warmup, plan.duration));
    let (baseline, gateway) = (reports.remove(1), reports.remove(0));
    let added = |quantile: f64| gateway.latency_ms(quantile) - baseline.latency_ms(quantile);
    let notes = format!(
        "{} req/s; added by the gateway: p50 {:.2} ms, p99 {:.2} ms (direct: p50 {:.2}, p99 {:.2})",
        plan.rate,
        added(0.5),
        added(0.99),
        baseline.latency_ms(0.5),
        baseline.latency_ms(0.99)
    );
    let mut row = Row::from_report(scenario, &gateway, notes);
    row.throughput = None;
    Ok(row)
}

/// Row 6: identical misses at once → how many reach the backend.
pub fn single_flight(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(300));
    let service = start_service(plan, &ollama, work, "flight")?;
    let target = Target::post(service.addr, "/generate", &json!({"prompt": "Benchmark: one flight for all"}));
    let report = runtime.block_on(load::burst(&[target], plan.burst));
    let calls = ollama.generate_hits();
    let mut row = Row::from_report(
        &format!("{} identical concurrent misses (single-flight)", plan.burst),
        &report,
        format!("{calls} backend call(s) for {} answers", report.ok),
    );
    row.throughput = None;
    Ok(row)
}

/// Two handler builds that behave the same but differ in bytes: the
/// second carries a custom section, so each push is a real swap.
fn handler_versions(handler: &Path) -> anyhow::Result<[Bytes; 2]> {
    let first = std::fs::read(handler)?;
    let mut second = first.clone();
    let name = b"llm-service-bench";
    second.extend_from_slice(&[0, (name.len() + 2) as u8, name.len() as u8]);
    second.extend_from_slice(name);
    second.push(b'!');
    Ok([Bytes::from(first), Bytes::from(second)])
}

/// Row 7: the cache hit under load while the handler is swapped.
pub fn hot_swap(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = start_service(plan, &ollama, work, "swap")?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    runtime.block_on(once(&hit))?;
    let versions = handler_versions(&plan.handler)?;
    let (admin, swaps, gap) = (service.admin_addr, plan.swaps, plan.duration / (plan.swaps as u32 + 1));
    let swapped = Arc::new(AtomicUsize::new(0));
    let swapper = runtime.spawn({
        let swapped = swapped.clone();
        let warmup = plan.warmup;
        async move {
            tokio::time::sleep(warmup).await;
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            for swap in 0..swaps {
                tokio::time::sleep(gap).await;
                let request = http::Request::put(format!("http://{admin}/components/handler"))
                    .header(http::header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                    .body(Full::new(versions[swap % 2].clone()))
                    .expect("a valid request");
                if client.request(request).await.is_ok_and(|response| response.status().is_success()) {
                    swapped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    let report = runtime.block_on(async {
        let report = load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await;
        swapper.await.map(|()| report)
    })?;
    let notes = format!("{} of {} swaps during the run", swapped.load(Ordering::Relaxed), swaps);
    Ok(Row::from_report("/generate cache hit while the handler is swapped", &report, notes))
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Row 8: process start → first 200 on /health, without and with the
/// compiled-component cache.
pub fn cold_start(plan: &Plan, work: &Path) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let warm_dir = work.join("cold-start-warm");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for start in 0..plan.starts {
        let empty = scratch_directory(&format!("cold-{start}"))?;
        let service =
            ServiceProcess::start(&plan.binary, &settings(&ollama, &empty), &work.join("cold.log"))?;
        cold.push(service.ready_after);
        drop(service);
        let _ = std::fs::remove_dir_all(empty);
    }
    // The first start fills the cache; the measured ones find it.
    drop(ServiceProcess::start(&plan.binary, &settings(&ollama, &warm_dir), &work.join("warm.log"))?);
    for _ in 0..plan.starts {
        let service =
            ServiceProcess::start(&plan.binary, &settings(&ollama, &warm_dir), &work.join("warm.log"))?;
        warm.push(service.ready_after);
    }
    let (cold, warm) = (median(cold), median(warm));
    Ok(Row {
        scenario: "cold start: spawn → first 200 on /health".into(),
        throughput: None,
        p50_ms: None,
        p99_ms: None,
        notes: format!(
            "median of {}: {:.0} ms without the compiled cache, {:.0} ms with it",
            plan.starts,
            cold.as_secs_f64() * 1000.0,
            warm.as_secs_f64() * 1000.0
        ),
    })
}

/// Row 9: row 3's hit with a prompt plugin serving its character; the
/// notes say what the plugin costs against `without_plugin` (row 3).
pub fn plugin_hit(
    plan: &Plan,
    work: &Path,
    runtime: &Runtime,
    without_plugin: Option<f64>,
) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let plugins = scratch_directory("plugins")?;
    std::fs::copy(&plan.plugin, plugins.join("peter.wasm"))?;
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.push(("PLUGINS_DIR", plugins.display().to_string()));
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join("plugin.log"))?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    let report = runtime.block_on(async {
        once(&hit).await?;
        let (head, _) = once(&hit).await?;
        let cached = head.headers.get("x-cache").is_some_and(|value| value == "HIT");
        anyhow::ensure!(cached, "the warm-up request through the plugin was not cached");
        anyhow::Ok(load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await)
    })?;
    anyhow::ensure!(
        ollama.generate_requests().iter().any(|sent| sent["system"].is_string()),
        "the plugin never ran"
    );
    let cost = without_plugin
        .map_or(String::new(), |plain| format!("{:.2}x the cost of row 3", plain / report.throughput()));
    Ok(Row::from_report("/generate cache hit (L1) through a prompt plugin", &report, cost))
}

/// Row 12: row 3's request once the handler has offered its replay: every
/// answer comes from the edge tier, without entering the component.
pub fn edge_hit(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.retain(|(name, _)| *name != "EDGE_CACHE_MAX_BYTES");
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join("edge.log"))?;
    let hit = Target::post(service.addr, "/generate", &cached_request());
    let report = runtime.block_on(async {
        for _ in 0..2 {
            once(&hit).await?;
        }
        let (head, _) = once(&hit).await?;
        let edge =
            head.headers.get("cache-status").is_some_and(|value| value == "llm-service; hit; detail=edge");
        anyhow::ensure!(edge, "the third identical request was not answered by the edge tier");
        anyhow::Ok(load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await)
    })?;
    Ok(Row::from_report("/generate exact repeat answered by the edge tier", &report, String::new()))
}
