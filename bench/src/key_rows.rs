//! Rows 15 and 16: what a client key costs a cache hit. Row 3's hit with
//! `CLIENT_KEYS=required`, every request presenting a key limited to the
//! model it asks for (so the check hashes the key, finds it and reads the
//! body's model); in row 16 the key has rpm and tpm limits too, counted
//! for the fleet through a redis-server (one script per request). The
//! notes compare with row 3 (no keys) of the same run.

use std::path::Path;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::load::{self, Target};
use crate::scenarios::{ADMIN_TOKEN, MODEL, Plan, Row, cached_request, once, settings};
use crate::service::ServiceProcess;

/// Row 15; `unkeyed` is row 3's throughput.
pub fn keyed_hit(plan: &Plan, work: &Path, runtime: &Runtime, unkeyed: Option<f64>) -> anyhow::Result<Row> {
    let scenario = "/generate cache hit (L1), a client key on every request";
    keyed_row(plan, work, runtime, unkeyed, scenario, None)
}

/// Row 16; `unkeyed` is row 3's throughput.
pub fn limited_hit(plan: &Plan, work: &Path, runtime: &Runtime, unkeyed: Option<f64>) -> anyhow::Result<Row> {
    let scenario = "row 15 with rpm and tpm limits, counted in redis-server";
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        return Ok(Row::skipped(scenario, "no redis-server"));
    }
    let redis = RedisServer::start();
    // Limits the bench never reaches: every request is checked, none refused.
    let limits = json!({"rpm": 1_000_000_000_u64, "tpm": 1_000_000_000_u64});
    keyed_row(plan, work, runtime, unkeyed, scenario, Some((&redis, limits)))
}

fn keyed_row(
    plan: &Plan,
    work: &Path,
    runtime: &Runtime,
    unkeyed: Option<f64>,
    scenario: &str,
    limited: Option<(&RedisServer, Value)>,
) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let mut settings = settings(&ollama, &work.join("compiled"));
    let name = if limited.is_some() { "limited" } else { "keyed" };
    settings.extend([
        ("CLIENT_KEYS", "required".to_string()),
        ("CLIENT_KEYS_FILE", work.join(format!("{name}-keys.json")).display().to_string()),
    ]);
    let mut key = json!({"tenant": "bench", "models": [MODEL]});
    if let Some((redis, limits)) = &limited {
        settings.push(("REDIS_URL", redis.url()));
        key["limits"] = limits.clone();
    }
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join(format!("{name}.log")))?;
    let admin = Target::post(service.admin_addr, "/keys", &key)
        .with_header("authorization", &format!("Bearer {ADMIN_TOKEN}"));
    let report = runtime.block_on(async {
        let (head, body) = once(&admin).await?;
        anyhow::ensure!(head.status == 201, "making a key: {}", String::from_utf8_lossy(&body));
        let key: serde_json::Value = serde_json::from_slice(&body)?;
        let secret = key["secret"].as_str().unwrap_or_default();
        let mut asked = cached_request();
        asked["model"] = json!(MODEL);
        let hit = Target::post(service.addr, "/generate", &asked)
            .with_header("authorization", &format!("Bearer {secret}"));
        once(&hit).await?;
        let (head, _) = once(&hit).await?;
        anyhow::ensure!(
            head.headers.get("x-cache").is_some_and(|value| value == "HIT"),
            "the keyed repeat was not a hit"
        );
        anyhow::Ok(load::fixed_concurrency(&hit, plan.connections, plan.warmup, plan.duration).await)
    })?;
    let notes = unkeyed.map_or(String::new(), |plain| {
        let added_us = (1.0 / report.throughput() - 1.0 / plain) * 1e6;
        format!(
            "{:.2} of row 3's throughput: {added_us:+.1} µs of the machine per request",
            report.throughput() / plain
        )
    });
    Ok(Row::from_report(scenario, &report, notes))
}
