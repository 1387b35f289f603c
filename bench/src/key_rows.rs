//! Row 15: what a client key costs a cache hit. Row 3's hit with
//! `CLIENT_KEYS=required`, every request presenting a key limited to the
//! model it asks for (so the check hashes the key, finds it and reads the
//! body's model); the notes compare with row 3 (no keys) of the same run.

use std::path::Path;

use llm_service_test_support::fake_ollama::FakeOllama;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::load::{self, Target};
use crate::scenarios::{ADMIN_TOKEN, MODEL, Plan, Row, cached_request, once, settings};
use crate::service::ServiceProcess;

/// Row 15; `unkeyed` is row 3's throughput.
pub fn keyed_hit(plan: &Plan, work: &Path, runtime: &Runtime, unkeyed: Option<f64>) -> anyhow::Result<Row> {
    let ollama = FakeOllama::start(&[MODEL]);
    let mut settings = settings(&ollama, &work.join("compiled"));
    settings.extend([
        ("CLIENT_KEYS", "required".to_string()),
        ("CLIENT_KEYS_FILE", work.join("keys.json").display().to_string()),
    ]);
    let service = ServiceProcess::start(&plan.binary, &settings, &work.join("keyed.log"))?;
    let admin = Target::post(service.admin_addr, "/keys", &json!({"tenant": "bench", "models": [MODEL]}))
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
    Ok(Row::from_report("/generate cache hit (L1), a client key on every request", &report, notes))
}
