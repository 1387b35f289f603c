//! The field's rows, measured the way GetBusbar/benchmarking ("On the
//! Bench") publishes gateways, so the figures compare with theirs: what
//! the gateway adds to a miss at concurrency 1, the most misses a second
//! under a p99 bound, what it adds to a paced stream and how many streams
//! it sustains, and its resident memory at idle, under load and after.
//! Every figure is through the gateway against the same request straight
//! to [`mock`] in the same run; the mock's own ceiling is printed.
//!
//! One service serves them all, in this order, so the memory rows see a
//! process that has done nothing yet, then the sweep's load, then rest.

mod client;
mod measure;
pub mod mock;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

use self::client::DIALECTS;
use self::measure::{
    Rung, Sustained, at_once, closed_loop, frontier, one_at_a_time, paced_streams, resident_mb,
};
use self::mock::{Mock, Pace};
use crate::scenarios::{MODEL, Plan};
use crate::service::ServiceProcess;

/// The stream rows' pace: 64 chunks, one every 20 ms.
const STREAM_PACE: Pace = Pace { chunks: 64, gap: Duration::from_millis(20) };
/// A gap between two frames past this is a stalled stream.
const STALL: Duration = Duration::from_millis(500);
/// The sweep's concurrencies.
const RUNGS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
/// The p99 bounds of the throughput frontier, in ms.
const BOUNDS_MS: [f64; 3] = [1.0, 5.0, 10.0];
/// The connections of the memory row's steady load.
const STEADY_RUNG: usize = 32;
/// How long the service rests before the memory after load is read.
const REST: Duration = Duration::from_secs(5);

/// How much of each row a run does.
struct Sizes {
    warmup: usize,
    one_at_a_time: usize,
    rung_warmup: Duration,
    rung: Duration,
    timed_streams: usize,
    at_once: Vec<usize>,
    rest: Duration,
}

impl Sizes {
    fn of(plan: &Plan) -> Self {
        if plan.duration < Duration::from_secs(1) {
            return Self {
                warmup: 5,
                one_at_a_time: 20,
                rung_warmup: Duration::from_millis(50),
                rung: Duration::from_millis(200),
                timed_streams: 1,
                at_once: vec![8],
                rest: Duration::from_millis(200),
            };
        }
        Self {
            warmup: 200,
            one_at_a_time: 2000,
            rung_warmup: Duration::from_millis(500),
            rung: Duration::from_secs(3),
            timed_streams: 20,
            at_once: vec![64, 128, 256, 512],
            rest: REST,
        }
    }
}

/// Runs the field rows; their tables in Markdown.
pub fn run(plan: &Plan, work: &Path, runtime: &Runtime) -> anyhow::Result<String> {
    let sizes = Sizes::of(plan);
    let counter = Arc::new(AtomicU64::new(0));
    let (instant, paced) = runtime.block_on(async {
        anyhow::Ok((Mock::start(Pace::INSTANT).await?, Mock::start(STREAM_PACE).await?))
    })?;
    // As an operator restarts it: the handler read from the compiled cache
    // (a first start compiles it, and keeps what the compiler used).
    drop(start(plan, work, "field-warm", instant.addr)?);
    let service = start(plan, work, "field", instant.addr)?;
    let idle_mb = resident_mb(service.pid());
    let mut out = String::from("## The field's rows\n\n");

    // Added latency at concurrency 1, every request a miss.
    out.push_str(
        "| dialect | direct p50 / p99 µs | gateway p50 / p99 µs | added p50 / p99 µs |\n|---|---|---|---|\n",
    );
    for dialect in DIALECTS {
        let (through, direct) = runtime.block_on(one_at_a_time(
            dialect,
            service.addr,
            instant.addr,
            sizes.warmup,
            sizes.one_at_a_time,
            &counter,
        ))?;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            dialect.name,
            pair(&direct),
            pair(&through),
            added(&through, &direct)
        );
    }

    // The throughput frontier, OpenAI's chat (the field's dialect).
    let openai = DIALECTS[2];
    let mut gateway_rungs = Vec::new();
    let mut mock_rungs = Vec::new();
    for concurrency in RUNGS {
        let sweep = |addr, path| {
            closed_loop(addr, openai, path, concurrency, sizes.rung_warmup, sizes.rung, counter.clone())
        };
        mock_rungs.push(runtime.block_on(sweep(instant.addr, openai.direct_path)));
        gateway_rungs.push(runtime.block_on(sweep(service.addr, openai.path)));
    }
    out.push_str(&sweep_table(&mock_rungs, &gateway_rungs));
    // Memory under a fixed load, read near its end, then after a rest.
    let steady_mb = runtime.block_on(async {
        let pid = service.pid();
        let near_end = sizes.rung_warmup + sizes.rung.mul_f64(0.9);
        let sampler = tokio::spawn(async move {
            tokio::time::sleep(near_end).await;
            resident_mb(pid)
        });
        closed_loop(
            service.addr,
            openai,
            openai.path,
            STEADY_RUNG,
            sizes.rung_warmup,
            sizes.rung,
            counter.clone(),
        )
        .await;
        sampler.await.ok().flatten()
    });
    std::thread::sleep(sizes.rest);
    let after_mb = resident_mb(service.pid());
    drop(service);

    // Streams: their own service, in front of the paced mock.
    let service = start(plan, work, "field-streams", paced.addr)?;
    let (through, direct) = runtime.block_on(paced_streams(
        openai,
        service.addr,
        paced.addr,
        sizes.timed_streams,
        STREAM_PACE.chunks,
        &counter,
    ))?;
    let _ = writeln!(
        out,
        "\nStreams of {} chunks at {} ms, {} ({} timed): time to first frame direct {}, gateway {}, added {} µs; \
         gap between frames direct {}, gateway {}, added {} µs (p50 / p99).\n",
        STREAM_PACE.chunks,
        STREAM_PACE.gap.as_millis(),
        openai.name,
        sizes.timed_streams,
        pair(&direct.first_us),
        pair(&through.first_us),
        added(&through.first_us, &direct.first_us),
        pair(&direct.gap_us),
        pair(&through.gap_us),
        added(&through.gap_us, &direct.gap_us),
    );
    out.push_str(
        "| streams at once | complete | stalled (a gap over 500 ms) | longest gap ms |\n|---|---|---|---|\n",
    );
    let mut sustained: Option<usize> = None;
    for &streams in &sizes.at_once {
        let result: Sustained = runtime.block_on(at_once(
            service.addr,
            openai,
            streams,
            STREAM_PACE.chunks,
            STALL,
            counter.clone(),
        ));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} |",
            result.streams,
            result.complete,
            result.stalled,
            result.longest_gap.as_secs_f64() * 1000.0
        );
        if result.complete == streams && result.stalled == 0 {
            sustained = Some(streams);
        } else {
            break;
        }
    }
    let _ = writeln!(
        out,
        "\nMost streams sustained (every frame, none stalled): {}.\n",
        sustained.map_or("none".to_string(), |streams| streams.to_string())
    );
    let mb = |value: Option<f64>| value.map_or("—".to_string(), |mb| format!("{mb:.1} MB"));
    let _ = writeln!(
        out,
        "Resident memory: idle before any request {}, steady under {STEADY_RUNG} connections of misses {}, \
         {:.1} s after the load stopped {}.",
        mb(idle_mb),
        mb(steady_mb),
        sizes.rest.as_secs_f64(),
        mb(after_mb)
    );
    Ok(out)
}

fn start(
    plan: &Plan,
    work: &Path,
    name: &str,
    backend: std::net::SocketAddr,
) -> anyhow::Result<ServiceProcess> {
    let settings = [
        ("OLLAMA_BASE_URL", format!("http://{backend}")),
        ("OLLAMA_MODEL", MODEL.to_string()),
        ("COMPILED_CACHE_DIR", work.join("compiled").display().to_string()),
        // As many generations at the backend as the rows send at once.
        ("MAX_CONCURRENT_REQUESTS", "1024".to_string()),
        ("OLLAMA_MAX_CONNECTIONS", "1024".to_string()),
    ];
    ServiceProcess::start(&plan.binary, &settings, &work.join(format!("{name}.log")))
}

fn microseconds(histogram: &Histogram<u64>, quantile: f64) -> i64 {
    histogram.value_at_quantile(quantile) as i64
}

fn pair(histogram: &Histogram<u64>) -> String {
    format!("{} / {}", microseconds(histogram, 0.5), microseconds(histogram, 0.99))
}

fn added(through: &Histogram<u64>, direct: &Histogram<u64>) -> String {
    let added = |quantile| microseconds(through, quantile) - microseconds(direct, quantile);
    format!("{:+} / {:+}", added(0.5), added(0.99))
}

fn sweep_table(mock: &[Rung], gateway: &[Rung]) -> String {
    let mut out = String::from(
        "\nMisses at fixed concurrency, OpenAI's chat:\n\n| connections | mock req/s | mock p99 ms | gateway req/s | gateway p99 ms | gateway errors |\n|---|---|---|---|---|---|\n",
    );
    let p99 = |rung: &Rung| rung.latency_us.value_at_quantile(0.99) as f64 / 1000.0;
    for (direct, through) in mock.iter().zip(gateway) {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {} |",
            through.concurrency,
            direct.throughput,
            p99(direct),
            through.throughput,
            p99(through),
            through.errors
        );
    }
    out.push('\n');
    for bound in BOUNDS_MS {
        let shown = |best: Option<(f64, usize)>| {
            best.map_or("none".to_string(), |(throughput, concurrency)| {
                format!("{throughput:.0} req/s (at {concurrency})")
            })
        };
        let (direct, through) = (frontier(mock, bound), frontier(gateway, bound));
        let ratio = match (direct, through) {
            (Some((direct, _)), Some((through, _))) => format!(", {:.2} of the mock's", through / direct),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "- p99 under {bound} ms: gateway {}, mock {}{ratio}",
            shown(through),
            shown(direct)
        );
    }
    out
}
