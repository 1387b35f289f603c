//! Row 11: several replicas. Identical misses spread over three replicas
//! that share a three-master Redis Cluster, against a backend that answers
//! after 300 ms: the backend calls the fleet makes (one, with single-flight
//! across replicas), against, in the same run, three replicas without a
//! shared store (one call each).

use std::path::Path;
use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_cluster::RedisCluster;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::load::{self, Target};
use crate::scenarios::{MODEL, Plan, Row, settings};
use crate::service::ServiceProcess;

/// The burst over three replicas (sharing `cluster`, if any): its report
/// and the backend calls it made.
fn over_three(
    plan: &Plan,
    work: &Path,
    runtime: &Runtime,
    cluster: Option<&RedisCluster>,
) -> anyhow::Result<(load::Report, usize)> {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(300));
    let mut settings = settings(&ollama, &work.join("compiled"));
    if let Some(cluster) = cluster {
        settings.push(("REDIS_CLUSTER_NODES", cluster.seed_nodes()));
    }
    let label = if cluster.is_some() { "shared" } else { "alone" };
    let replicas = (0..3)
        .map(|index| {
            let log = work.join(format!("replica-{label}-{index}.log"));
            ServiceProcess::start(&plan.binary, &settings, &log)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let body = json!({"prompt": "Benchmark: one flight for the fleet"});
    let targets: Vec<Target> =
        replicas.iter().map(|replica| Target::post(replica.addr, "/generate", &body)).collect();
    let report = runtime.block_on(load::burst(&targets, plan.burst));
    Ok((report, ollama.generate_hits()))
}

/// Row 11.
pub fn three_replicas(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<Row> {
    let scenario = format!("{} identical concurrent misses over 3 replicas (Redis Cluster)", plan.burst);
    if std::process::Command::new("redis-server").arg("--version").output().is_err() {
        return Ok(Row::skipped(&scenario, "no redis-server"));
    }
    let cluster = RedisCluster::start();
    let (shared, calls) = over_three(plan, work, runtime, Some(&cluster))?;
    let (_, alone) = over_three(plan, work, runtime, None)?;
    let notes = format!(
        "{calls} backend call(s) for {} answers; 3 replicas without a shared store: {alone}",
        shared.ok
    );
    let mut row = Row::from_report(&scenario, &shared, notes);
    row.throughput = None;
    Ok(row)
}
