//! Row 10: several backend nodes. Misses (never cached) at fixed
//! concurrency through one node, then through three, each a fake Ollama
//! with one slot and 20 ms per answer: the pool's throughput should be about
//! three times one node's, measured in the same run.

use std::path::Path;
use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::load::{self, Target};
use crate::scenarios::{MODEL, Plan, Row, settings};
use crate::service::ServiceProcess;

/// Per answer, at every node.
const NODE_LATENCY: Duration = Duration::from_millis(20);

/// Misses through `nodes`, each given one slot in a BACKENDS_FILE.
fn through(
    plan: &Plan,
    work: &Path,
    runtime: &Runtime,
    nodes: &[FakeOllama],
) -> anyhow::Result<load::Report> {
    let file = work.join(format!("backends-{}.toml", nodes.len()));
    let entries: String = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            format!("[[node]]\nname = \"n{index}\"\nurl = \"{}\"\nslots = 1\n\n", node.url())
        })
        .collect();
    std::fs::write(&file, entries)?;
    let mut settings = settings(&nodes[0], &work.join("compiled"));
    settings.push(("BACKENDS_FILE", file.display().to_string()));
    let log = work.join(format!("pool-{}.log", nodes.len()));
    let service = ServiceProcess::start(&plan.binary, &settings, &log)?;
    let miss = Target::post(
        service.addr,
        "/generate",
        &json!({"prompt": "Benchmark: a miss on some node", "use_cache": false, "settings": {"max_tokens": 8}}),
    );
    Ok(runtime.block_on(load::fixed_concurrency(&miss, plan.connections, plan.warmup, plan.duration)))
}

/// Row 10.
pub fn three_nodes(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let nodes: Vec<FakeOllama> = (0..3).map(|_| FakeOllama::start(&[MODEL])).collect();
    for node in &nodes {
        node.set_latency(NODE_LATENCY);
    }
    let one = through(plan, work, runtime, &nodes[..1])?;
    let calls_before: Vec<usize> = nodes.iter().map(|node| node.generate_requests().len()).collect();
    let three = through(plan, work, runtime, &nodes)?;
    let calls: Vec<String> = nodes
        .iter()
        .zip(calls_before)
        .map(|(node, before)| (node.generate_requests().len() - before).to_string())
        .collect();
    let notes = format!(
        "{:.2}x one node's {:.0} req/s; calls per node {}",
        three.throughput() / one.throughput().max(f64::MIN_POSITIVE),
        one.throughput(),
        calls.join("/")
    );
    Ok(Row::from_report("/generate misses over 3 nodes (1 slot, 20 ms each)", &three, notes))
}
