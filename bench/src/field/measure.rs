//! The field rows' measurements, each against the gateway and straight
//! against the mock under the same conditions: misses one at a time, a
//! concurrency sweep of misses, paced streams timed frame by frame, many
//! streams at once, and the service's resident memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Connection, Dialect, Frames};

/// Microsecond latencies.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn record(histogram: &mut Histogram<u64>, took: Duration) {
    let _ = histogram.record(took.as_micros().max(1) as u64);
}

/// A prompt no earlier request asked, so every answer is a miss.
fn fresh_prompt(counter: &AtomicU64) -> String {
    format!("field row question {}", counter.fetch_add(1, Ordering::Relaxed))
}

/// `count` misses one after another through the gateway, each followed by
/// the same question straight to the mock: (gateway, direct).
pub async fn one_at_a_time(
    dialect: Dialect,
    gateway: SocketAddr,
    mock: SocketAddr,
    warmup: usize,
    count: usize,
    counter: &AtomicU64,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let (mut through, mut direct) = (Connection::open(gateway).await?, Connection::open(mock).await?);
    let (mut via_gateway, mut straight) = (histogram(), histogram());
    for index in 0..warmup + count {
        let body = (dialect.body)(&fresh_prompt(counter), false);
        let answered = through.post(dialect.path, &body).await?;
        anyhow::ensure!(answered.status == 200, "{} answered {}", dialect.path, answered.status);
        let mocked = direct.post(dialect.direct_path, &body).await?;
        anyhow::ensure!(
            mocked.status == 200,
            "the mock's {} answered {}",
            dialect.direct_path,
            mocked.status
        );
        if index >= warmup {
            record(&mut via_gateway, answered.done);
            record(&mut straight, mocked.done);
        }
    }
    Ok((via_gateway, straight))
}

/// One rung of a sweep: answers per second and their latencies.
#[derive(Debug, Clone)]
pub struct Rung {
    /// Connections sending at once.
    pub concurrency: usize,
    /// 200s per second.
    pub throughput: f64,
    /// Their latencies.
    pub latency_us: Histogram<u64>,
    /// Answers that were not 200, and failed connections.
    pub errors: u64,
}

/// `concurrency` connections send misses to `path` back to back for
/// `duration` after `warmup`.
pub async fn closed_loop(
    addr: SocketAddr,
    dialect: Dialect,
    path: &'static str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    counter: Arc<AtomicU64>,
) -> Rung {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut latency_us, mut ok, mut errors) = (histogram(), 0u64, 0u64);
                let mut connection = None;
                while Instant::now() < end {
                    if connection.is_none() {
                        connection = Connection::open(addr).await.ok();
                    }
                    let Some(open) = connection.as_mut() else {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let sent = Instant::now();
                    let answered = open.post(path, &(dialect.body)(&fresh_prompt(&counter), false)).await;
                    let measured = sent >= start;
                    match answered {
                        Ok(frames) if frames.status == 200 => {
                            if measured {
                                ok += 1;
                                record(&mut latency_us, frames.done);
                            }
                        }
                        Ok(_) => errors += u64::from(measured),
                        Err(_) => {
                            errors += u64::from(measured);
                            connection = None;
                        }
                    }
                }
                (latency_us, ok, errors)
            })
        })
        .collect();
    let mut rung = Rung { concurrency, throughput: 0.0, latency_us: histogram(), errors: 0 };
    let mut ok = 0;
    for worker in workers {
        if let Ok((latency_us, answered, errors)) = worker.await {
            let _ = rung.latency_us.add(&latency_us);
            ok += answered;
            rung.errors += errors;
        }
    }
    rung.throughput = ok as f64 / duration.as_secs_f64();
    rung
}

/// The most answers per second among `rungs` whose p99 stayed under
/// `bound_ms`, with that rung's concurrency.
pub fn frontier(rungs: &[Rung], bound_ms: f64) -> Option<(f64, usize)> {
    rungs
        .iter()
        .filter(|rung| rung.errors == 0 && rung.latency_us.value_at_quantile(0.99) as f64 / 1000.0 < bound_ms)
        .map(|rung| (rung.throughput, rung.concurrency))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// Time to the first frame and between frames of paced streams.
#[derive(Debug)]
pub struct StreamTimes {
    /// From sending to the first frame.
    pub first_us: Histogram<u64>,
    /// Between consecutive frames.
    pub gap_us: Histogram<u64>,
}

impl StreamTimes {
    fn new() -> Self {
        Self { first_us: histogram(), gap_us: histogram() }
    }

    fn add(&mut self, frames: &Frames) {
        let mut last = None;
        for &at in &frames.at {
            match last {
                None => record(&mut self.first_us, at),
                Some(before) => record(&mut self.gap_us, at - before),
            }
            last = Some(at);
        }
    }
}

/// `count` streams through the gateway, each beside the same stream
/// straight from the mock at the same moment: (gateway, direct).
pub async fn paced_streams(
    dialect: Dialect,
    gateway: SocketAddr,
    mock: SocketAddr,
    count: usize,
    chunks: usize,
    counter: &AtomicU64,
) -> anyhow::Result<(StreamTimes, StreamTimes)> {
    let (mut through, mut direct) = (Connection::open(gateway).await?, Connection::open(mock).await?);
    let (mut via_gateway, mut straight) = (StreamTimes::new(), StreamTimes::new());
    for _ in 0..count {
        let body = (dialect.body)(&fresh_prompt(counter), true);
        let (answered, mocked) =
            tokio::join!(through.post(dialect.path, &body), direct.post(dialect.direct_path, &body));
        let (answered, mocked) = (answered?, mocked?);
        anyhow::ensure!(answered.has_every_chunk(chunks), "a gateway stream lost text: {}", answered.status);
        anyhow::ensure!(mocked.has_every_chunk(chunks), "a mock stream lost text");
        via_gateway.add(&answered);
        straight.add(&mocked);
    }
    Ok((via_gateway, straight))
}

/// What became of `streams` streams started at once.
#[derive(Debug, Clone)]
pub struct Sustained {
    /// Streams started.
    pub streams: usize,
    /// Streams whose every piece of text arrived.
    pub complete: usize,
    /// Complete streams with a gap between frames past the stall bound.
    pub stalled: usize,
    /// The longest gap between two frames of any stream.
    pub longest_gap: Duration,
}

/// Starts `streams` streams at once, each on its own connection.
pub async fn at_once(
    gateway: SocketAddr,
    dialect: Dialect,
    streams: usize,
    chunks: usize,
    stall: Duration,
    counter: Arc<AtomicU64>,
) -> Sustained {
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            let body = (dialect.body)(&fresh_prompt(&counter), true);
            tokio::spawn(async move {
                let mut connection = Connection::open(gateway).await.ok()?;
                connection.post(dialect.path, &body).await.ok()
            })
        })
        .collect();
    let mut sustained = Sustained { streams, complete: 0, stalled: 0, longest_gap: Duration::ZERO };
    for task in tasks {
        let Ok(Some(frames)) = task.await else { continue };
        if !frames.has_every_chunk(chunks) {
            continue;
        }
        sustained.complete += 1;
        // The first frame waits for its start like any request; a stall is a
        // gap once the stream runs.
        let gap = frames.at.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();
        sustained.longest_gap = sustained.longest_gap.max(gap);
        sustained.stalled += usize::from(gap > stall);
    }
    sustained
}

/// The resident set of process `pid`, in MB.
pub fn resident_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
