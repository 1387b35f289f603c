//! `llm-service-bench`: runs every scenario against the release binary and
//! prints one table, each throughput row with its ratio to row 1 (a native
//! hyper server answering the same bytes) measured in the same run.

mod faults;
mod field;
mod key_rows;
mod load;
mod native;
mod pool_rows;
mod replica_rows;
mod scenarios;
mod service;
mod trace_rows;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use scenarios::{Plan, Row};

/// Benchmarks llm-service against a native baseline.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The llm-service binary to measure.
    #[arg(long, default_value = "target/release/llm-service")]
    service: PathBuf,
    /// The handler the hot-swap row uploads (default: the build's, beside the binary).
    #[arg(long)]
    handler: Option<PathBuf>,
    /// The prompt plugin the plugin row loads (default: the build's `peter`, beside the binary).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Seconds each throughput row is measured.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    /// Connections of the fixed-concurrency rows.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests per second of the added-latency row.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// A few seconds in all: checks that every row runs, measures nothing worth keeping.
    #[arg(long)]
    smoke: bool,
    /// Only the field's rows (added latency, the frontier, streams, memory).
    #[arg(long)]
    field_only: bool,
    /// Instead of the benchmark: the fault suite, `short` (the test command's) or `full`.
    #[arg(long, value_name = "SIZE")]
    faults: Option<FaultSize>,
}

impl Args {
    fn plan(&self) -> Plan {
        let target = self.service.parent().and_then(|profile| profile.parent()).unwrap_or(&self.service);
        let built = |name: &str| target.join("wasm-components/wasm32-wasip2/release").join(name);
        let handler = self.handler.clone().unwrap_or_else(|| built("handler.wasm"));
        let plugin = self.plugin.clone().unwrap_or_else(|| built("peter.wasm"));
        let smoke = self.smoke;
        Plan {
            binary: self.service.clone(),
            handler,
            plugin,
            duration: if smoke { Duration::from_millis(500) } else { Duration::from_secs_f64(self.seconds) },
            warmup: if smoke { Duration::from_millis(100) } else { Duration::from_secs(2) },
            connections: self.connections,
            rate: self.rate,
            burst: 100,
            swaps: if smoke { 2 } else { 20 },
            starts: if smoke { 1 } else { 5 },
        }
    }
}

/// How much of the fault suite to run.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FaultSize {
    /// About a minute.
    Short,
    /// The figures docs/RELIABILITY.md quotes.
    Full,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = args.plan();
    anyhow::ensure!(
        plan.binary.exists(),
        "no llm-service binary at {} (build it: cargo build --release)",
        plan.binary.display()
    );
    if let Some(size) = args.faults {
        let size = match size {
            FaultSize::Short => faults::Size::Short,
            FaultSize::Full => faults::Size::Full,
        };
        let rows = faults::run(&plan.binary, size)?;
        println!("{}", faults::table(&rows));
        anyhow::ensure!(faults::nothing_lost(&rows), "requests were lost: see the table");
        return Ok(());
    }
    let work = service::scratch_directory("work")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.field_only {
        eprintln!("bench: the field's rows");
        println!("{}", field::run(&plan, &work, &runtime)?);
        let _ = std::fs::remove_dir_all(&work);
        return Ok(());
    }
    let mut rows = Vec::new();
    eprintln!("bench: rows 1-3 (native, /health, L1 hit)");
    rows.extend(scenarios::fast_paths(&plan, &work, &runtime)?);
    eprintln!("bench: row 4 (KeyDB hit)");
    rows.push(scenarios::keydb_hit(&plan, &work, &runtime)?);
    eprintln!("bench: row 5 (added latency)");
    rows.push(scenarios::added_latency(&plan, &work, &runtime)?);
    eprintln!("bench: row 6 (single-flight)");
    rows.push(scenarios::single_flight(&plan, &work, &runtime)?);
    eprintln!("bench: row 7 (hot swap under load)");
    rows.push(scenarios::hot_swap(&plan, &work, &runtime)?);
    eprintln!("bench: row 8 (cold start)");
    rows.push(scenarios::cold_start(&plan, &work)?);
    eprintln!("bench: row 9 (L1 hit through a prompt plugin)");
    let without_plugin = rows[2].throughput;
    rows.push(scenarios::plugin_hit(&plan, &work, &runtime, without_plugin)?);
    eprintln!("bench: row 10 (misses over three backend nodes)");
    rows.push(pool_rows::three_nodes(&plan, &work, &runtime)?);
    eprintln!("bench: row 11 (identical misses over three replicas)");
    rows.push(replica_rows::three_replicas(&plan, &work, &runtime)?);
    eprintln!("bench: row 12 (exact repeat from the edge tier)");
    rows.push(scenarios::edge_hit(&plan, &work, &runtime)?);
    eprintln!("bench: rows 13-14 (the hit and the miss, every request traced)");
    let untraced = rows[2].throughput;
    rows.push(trace_rows::traced_hit(&plan, &work, &runtime, untraced)?);
    rows.push(trace_rows::traced_miss(&plan, &work, &runtime)?);
    eprintln!("bench: row 15 (the hit with a client key)");
    rows.push(key_rows::keyed_hit(&plan, &work, &runtime, untraced)?);
    eprintln!("bench: row 16 (the hit with a limited key, counted in redis-server)");
    rows.push(key_rows::limited_hit(&plan, &work, &runtime, untraced)?);
    println!("{}", table(&rows, &plan));
    eprintln!("bench: the field's rows");
    println!("{}", field::run(&plan, &work, &runtime)?);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The rows as a Markdown table; throughput ratios are to row 1.
fn table(rows: &[Row], plan: &Plan) -> String {
    let ceiling = rows.first().and_then(|row| row.throughput).unwrap_or(f64::NAN);
    let number = |value: Option<f64>, decimals: usize| {
        value.map_or("—".to_string(), |value| format!("{value:.decimals$}"))
    };
    let mut out = format!(
        "{} connections, {:.1} s per throughput row, {} req/s for row 5\n\n",
        plan.connections,
        plan.duration.as_secs_f64(),
        plan.rate
    );
    out.push_str("| # | scenario | req/s | ratio to row 1 | p50 ms | p99 ms | notes |\n|---|---|---|---|---|---|---|\n");
    for (index, row) in rows.iter().enumerate() {
        let ratio = row.throughput.map(|throughput| throughput / ceiling);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            index + 1,
            row.scenario,
            number(row.throughput, 0),
            number(ratio, 2),
            number(row.p50_ms, 2),
            number(row.p99_ms, 2),
            row.notes
        ));
    }
    out
}
