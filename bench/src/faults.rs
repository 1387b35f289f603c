//! The fault suite (`llm-service-bench --faults short|full`): the service
//! under load while its dependencies and its clients misbehave, one table
//! row per fault. A request is *ok* (2xx), *failed* (an answer, with an
//! error status: what a client can act on) or *lost* (no answer at all: a
//! dropped connection, a timeout). The service must lose nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use llm_service_test_support::Client;
use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::redis_server::RedisServer;
use serde_json::{Value, json};

use crate::service::ServiceProcess;

mod nodes;

const MODEL: &str = "llama3:8b-instruct-q5_K_M";

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A minute or so: what the test command runs.
    Short,
    /// The figures docs/RELIABILITY.md quotes.
    Full,
}

impl Size {
    fn pick<T>(self, short: T, full: T) -> T {
        match self {
            Self::Short => short,
            Self::Full => full,
        }
    }
}

/// One fault's outcome.
#[derive(Debug, Default)]
pub struct FaultRow {
    fault: String,
    counts: Counts,
    notes: String,
}

/// Requests by outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    ok: u64,
    failed: u64,
    lost: u64,
}

impl Counts {
    fn sent(&self) -> u64 {
        self.ok + self.failed + self.lost
    }

    fn add(&mut self, other: Counts) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.lost += other.lost;
    }

    fn note(&mut self, outcome: Result<u16, String>) {
        match outcome {
            Ok(status) if (200..300).contains(&status) => self.ok += 1,
            Ok(_) => self.failed += 1,
            Err(_) => self.lost += 1,
        }
    }
}

/// Clients sending requests in a loop until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Counts>>,
}

impl Load {
    /// `threads` clients, each sending `request(n)` (method, path, body) for n = 0, 1, ...
    fn start(
        addr: SocketAddr,
        threads: usize,
        request: impl Fn(u64) -> (&'static str, String, Value) + Send + Sync + 'static,
    ) -> Self {
        let (stop, request, next) =
            (Arc::new(AtomicBool::new(false)), Arc::new(request), Arc::new(AtomicU64::new(0)));
        let threads = (0..threads)
            .map(|_| {
                let (stop, request, next) = (stop.clone(), request.clone(), next.clone());
                std::thread::spawn(move || {
                    let (client, mut counts) = (Client::new(), Counts::default());
                    while !stop.load(Ordering::Relaxed) {
                        let (method, path, body) = request(next.fetch_add(1, Ordering::Relaxed));
                        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
                        let outcome = client.try_send(method, &format!("http://{addr}{path}"), &body);
                        counts.note(outcome.map(|reply| reply.status));
                    }
                    counts
                })
            })
            .collect();
        Self { stop, threads }
    }

    fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Counts::default();
        for thread in self.threads {
            total.add(thread.join().unwrap_or_default());
        }
        total
    }
}

fn service(binary: &Path, ollama: &FakeOllama, extra: &[(&str, String)]) -> anyhow::Result<ServiceProcess> {
    let log = std::env::temp_dir().join(format!("llm-service-faults-{}.log", std::process::id()));
    let mut settings = vec![("OLLAMA_BASE_URL", ollama.url()), ("MAX_CONCURRENT_REQUESTS", "64".to_string())];
    settings.extend(extra.iter().cloned());
    ServiceProcess::start(binary, &settings, &log)
}

fn generate(prompt: String) -> (&'static str, String, Value) {
    ("POST", "/generate".into(), json!({"prompt": prompt, "settings": {"max_tokens": 4}}))
}

/// A Prometheus counter's value from the service.
fn counter(addr: SocketAddr, name: &str) -> u64 {
    let text = Client::new().try_get(&format!("http://{addr}/metrics/prometheus")).map(|reply| reply.body);
    text.unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// Every fault of a `size` run, against `binary`.
pub fn run(binary: &Path, size: Size) -> anyhow::Result<Vec<FaultRow>> {
    let mut rows = Vec::new();
    for (name, fault) in FAULTS {
        eprintln!("faults: {name}");
        rows.push(fault(binary, size)?);
    }
    Ok(rows)
}

type FaultFn = fn(&Path, Size) -> anyhow::Result<FaultRow>;

const FAULTS: &[(&str, FaultFn)] = &[
    ("KeyDB killed and restarted", redis_killed),
    ("KeyDB hung", redis_hung),
    ("backend killed and back", backend_killed),
    ("backend hung", backend_hung),
    ("backend flapping", backend_flapping),
    ("client mistakes and backend refusals", mistakes_and_refusals),
    ("pool node answers junk", nodes::junk),
    ("pool node answers 400", nodes::fast_400),
    ("pool node hangs", nodes::hang),
    ("pool node flaps", nodes::flap),
    ("slowloris", slowloris),
    ("idle-connection flood", idle_flood),
    ("slow-body flood", slow_bodies),
    ("batch of 32 x 4 KB", big_batch),
    ("distinct characters", distinct_characters),
    ("SIGTERM with streams in flight", sigterm_with_streams),
];

/// Cacheable generations over a few prompts (hits and misses) while KeyDB
/// suffers `fault`, then `heal`.
fn under_redis_trouble(
    binary: &Path,
    size: Size,
    name: &str,
    fault: impl Fn(&mut RedisServer),
    heal: impl Fn(&mut RedisServer),
) -> anyhow::Result<FaultRow> {
    let (ollama, mut redis) = (FakeOllama::start(&[MODEL]), RedisServer::start());
    let service = service(binary, &ollama, &[("REDIS_URL", redis.url()), ("CACHE_MAX_SIZE", "0".into())])?;
    let load = Load::start(service.addr, 8, |n| generate(format!("prompt {}", n % 40)));
    let phase = size.pick(Duration::from_secs(2), Duration::from_secs(6));
    std::thread::sleep(phase / 2);
    let errors_before = counter(service.addr, "llm_service_cache_errors_total");
    let faulted = Instant::now();
    fault(&mut redis);
    std::thread::sleep(phase);
    let errors = counter(service.addr, "llm_service_cache_errors_total") - errors_before;
    let periods = 1 + faulted.elapsed().as_secs() / 2;
    heal(&mut redis);
    std::thread::sleep(phase / 2);
    let counts = load.finish();
    let notes = format!(
        "{errors} KeyDB errors in {:.1} s of trouble: the calls of the 8 clients in flight when it failed, then at most one per 2 s ({periods} periods)",
        phase.as_secs_f64()
    );
    Ok(FaultRow { fault: name.into(), counts, notes })
}

fn redis_killed(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    under_redis_trouble(binary, size, "KeyDB killed, then restarted", RedisServer::kill, RedisServer::restart)
}

fn redis_hung(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    under_redis_trouble(
        binary,
        size,
        "KeyDB hung (SIGSTOP), then thawed",
        |redis| redis.pause(),
        |redis| redis.resume(),
    )
}

/// Uncached generations while the backend suffers `fault`.
fn under_backend_trouble(
    binary: &Path,
    name: &str,
    extra: &[(&str, String)],
    trouble: impl FnOnce(&FakeOllama),
) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, extra)?;
    let load = Load::start(service.addr, 8, |n| {
        ("POST", "/generate".into(), json!({"prompt": format!("uncached {n}"), "use_cache": false}))
    });
    std::thread::sleep(Duration::from_millis(500));
    trouble(&ollama);
    std::thread::sleep(Duration::from_millis(500));
    let counts = load.finish();
    Ok(FaultRow {
        fault: name.into(),
        counts,
        notes: "failed = 503/504 with a JSON error, as documented".into(),
    })
}

fn backend_killed(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let down = size.pick(Duration::from_secs(1), Duration::from_secs(4));
    under_backend_trouble(binary, "backend down, then back", &[], |ollama| {
        ollama.set_offline(true);
        std::thread::sleep(down);
        ollama.set_offline(false);
    })
}

fn backend_hung(binary: &Path, _size: Size) -> anyhow::Result<FaultRow> {
    under_backend_trouble(
        binary,
        "backend hangs on 5 requests",
        &[("REQUEST_TIMEOUT", "2".into())],
        |ollama| {
            ollama.fail_next(5, Fault::Hang);
            std::thread::sleep(Duration::from_secs(3));
        },
    )
}

fn backend_flapping(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let flaps = size.pick(10, 40);
    under_backend_trouble(binary, &format!("backend flapping ({flaps} x 100 ms down)"), &[], |ollama| {
        for _ in 0..flaps {
            ollama.set_offline(true);
            std::thread::sleep(Duration::from_millis(100));
            ollama.set_offline(false);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Uncached Ollama chats, every fourth with an option of the wrong type
/// (the gateway's to refuse), while the backend refuses some outright (a
/// 400, as llama.cpp answers a prompt over the context): each refusal must
/// reach the client as a 400 and cost at most the one backend call.
fn mistakes_and_refusals(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL, "backup:1b"]);
    let service = service(binary, &ollama, &[("FALLBACK_MODELS", "backup:1b".into())])?;
    let load = Load::start(service.addr, 8, |n| {
        let options = if n % 4 == 0 { json!({"temperature": "hot"}) } else { json!({"num_predict": 4}) };
        let messages = json!([{"role": "user", "content": format!("uncached {n}")}]);
        let body = json!({"model": MODEL, "stream": false, "options": options, "messages": messages});
        ("POST", "/api/chat".into(), body)
    });
    let refusals = size.pick(20, 100);
    std::thread::sleep(Duration::from_millis(300));
    ollama.fail_next(refusals, Fault::Status(400));
    std::thread::sleep(size.pick(Duration::from_secs(1), Duration::from_secs(3)));
    let counts = load.finish();
    let calls = ollama.chat_requests().len() as u64;
    let notes = format!(
        "failed = a quarter refused by the gateway (wrong option type, no backend call) and {refusals} refused by the backend (400 relayed, not 502); {calls} backend calls for {} answered + {refusals} refused: none retried or tried on a fallback",
        counts.ok
    );
    anyhow::ensure!(calls == counts.ok + refusals as u64, "{notes}");
    Ok(FaultRow { fault: "client mistakes and backend refusals".into(), counts, notes })
}

/// Opens `count` connections, each sending `first` and then nothing.
fn hold_connections(addr: SocketAddr, count: usize, first: &[u8]) -> Vec<TcpStream> {
    (0..count)
        .filter_map(|_| {
            let mut socket = TcpStream::connect(addr).ok()?;
            let _ = socket.write_all(first);
            Some(socket)
        })
        .collect()
}

/// How many of `sockets` the service has closed (a read sees the end).
fn closed_by_service(sockets: &mut [TcpStream]) -> usize {
    sockets
        .iter_mut()
        .map(|socket| {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
            let mut buffer = [0u8; 512];
            loop {
                match socket.read(&mut buffer) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(error) => return error.kind() == std::io::ErrorKind::ConnectionReset,
                }
            }
        })
        .filter(|closed| *closed)
        .count()
}

/// /health from a client whose connection was made before the flood (as a
/// monitor's is), during `during`.
fn health_during(addr: SocketAddr, during: impl FnOnce()) -> Counts {
    let load = Load::start(addr, 2, |_| ("GET", "/health".into(), Value::Null));
    std::thread::sleep(Duration::from_millis(100));
    during();
    load.finish()
}

fn slowloris(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, &[("HEADER_READ_TIMEOUT_MS", "1000".into())])?;
    let count = size.pick(300, 3000);
    let mut held = Vec::new();
    let counts = health_during(service.addr, || {
        held = hold_connections(service.addr, count, b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ");
        std::thread::sleep(Duration::from_millis(1500));
    });
    let closed = closed_by_service(&mut held);
    let notes = format!(
        "{count} half-sent heads; {closed} closed by the service within 1.5 s (HEADER_READ_TIMEOUT_MS=1000); /health answered throughout"
    );
    Ok(FaultRow { fault: "slowloris".into(), counts, notes })
}

fn idle_flood(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, &[])?;
    // The fault tool's own descriptors bound the flood (ulimit -n here: 20,000).
    let count = size.pick(500, 19_000);
    let mut held = Vec::new();
    let before = memory_mb(service.addr);
    let mut during = 0.0;
    let counts = health_during(service.addr, || {
        held = hold_connections(service.addr, count, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
        std::thread::sleep(Duration::from_millis(500));
        during = memory_mb(service.addr);
    });
    let opened = held.len();
    let refused = closed_by_service(&mut held);
    drop(held);
    // The allocator is trimmed within a few seconds of the flood draining.
    std::thread::sleep(Duration::from_secs(5));
    let after = memory_mb(service.addr);
    let notes = format!(
        "{opened} connections opened, each sending one request then nothing; {refused} of them closed at once (past the cap: MAX_CONNECTIONS, cut to ulimit -n - 320, when no silent one is left to shed; or by a full accept queue); /health on an established connection answered throughout; resident memory {before:.0} MB before, {during:.0} MB held, {after:.0} MB 5 s after"
    );
    Ok(FaultRow { fault: "idle-connection flood".into(), counts, notes })
}

fn slow_bodies(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, &[("BODY_READ_TIMEOUT_MS", "1000".into())])?;
    let count = size.pick(100, 1024);
    let mut held = Vec::new();
    let counts = health_during(service.addr, || {
        held = hold_connections(
            service.addr,
            count,
            b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"prompt\":",
        );
        std::thread::sleep(Duration::from_millis(1500));
    });
    let answered = held
        .iter_mut()
        .map(|socket| {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 12];
            socket.read_exact(&mut head).is_ok() && (head.ends_with(b"408") || head.ends_with(b"503"))
        })
        .filter(|answered| *answered)
        .count();
    let notes = format!(
        "{count} bodies trickling; {answered} told 408 (too slow) or 503 (too many at once); /health answered throughout"
    );
    Ok(FaultRow { fault: "slow-body flood".into(), counts, notes })
}

fn big_batch(binary: &Path, _size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, &[("MAX_CONCURRENT_REQUESTS", "10".into())])?;
    let items: Vec<Value> = (0..32)
        .map(|index| json!({"prompt": format!("item {index} {}", "word ".repeat(800)), "settings": {"max_tokens": 2}}))
        .collect();
    let started = Instant::now();
    let url = format!("http://{}/generate/batch", service.addr);
    let batch = std::thread::spawn(move || {
        Client::new().try_send("POST", &url, json!({"requests": items}).to_string().as_bytes())
    });
    let mut counts = Counts::default();
    let other = Client::new().try_send(
        "POST",
        &format!("http://{}/generate", service.addr),
        br#"{"prompt":"meanwhile"}"#,
    );
    counts.note(other.map(|reply| reply.status));
    let mut first_error = String::new();
    match batch.join().map_err(|_| anyhow::anyhow!("the batch thread panicked"))? {
        Ok(reply) => {
            let results = serde_json::from_str::<Value>(&reply.body).unwrap_or_default()["results"].clone();
            for result in results.as_array().cloned().unwrap_or_default() {
                if first_error.is_empty()
                    && let Some(error) = result["error"].as_str()
                {
                    first_error = format!("; first error: {error}");
                }
                counts.note(Ok(result["status"].as_u64().map_or(200, |status| status as u16)));
            }
        }
        Err(error) => counts.note(Err(error)),
    }
    let notes = format!(
        "32 items (10 backend slots) and one other request, done in {:.2} s{first_error}",
        started.elapsed().as_secs_f64()
    );
    Ok(FaultRow { fault: "batch of 32 x 4 KB".into(), counts, notes })
}

fn memory_mb(addr: SocketAddr) -> f64 {
    let metrics = Client::new()
        .try_get(&format!("http://{addr}/metrics"))
        .map(|reply| reply.json())
        .unwrap_or_default();
    metrics["memory_usage"].as_str().and_then(|text| text.trim_end_matches("MB").parse().ok()).unwrap_or(0.0)
}

fn distinct_characters(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(binary, &ollama, &[])?;
    let total = size.pick(2_000, 50_000);
    let before = memory_mb(service.addr);
    let sent = Arc::new(AtomicU64::new(0));
    let load = {
        let sent = sent.clone();
        Load::start(service.addr, 16, move |n| {
            sent.fetch_add(1, Ordering::Relaxed);
            (
                "POST",
                "/generate".into(),
                json!({"prompt": "hello", "character_name": format!("invented-{n}")}),
            )
        })
    };
    while sent.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_millis(20));
    }
    let counts = load.finish();
    let after = memory_mb(service.addr);
    let text = Client::new()
        .try_get(&format!("http://{}/metrics/prometheus", service.addr))
        .map(|r| r.body)
        .unwrap_or_default();
    let series = text.lines().filter(|line| line.starts_with("llm_service_generations_total{")).count();
    let notes = format!(
        "{} distinct characters; resident memory {before:.1} MB before, {after:.1} MB after; {series} character series",
        counts.sent()
    );
    Ok(FaultRow { fault: "distinct characters".into(), counts, notes })
}

fn sigterm_with_streams(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(50));
    let mut service = service(binary, &ollama, &[])?;
    let streams = size.pick(10, 50);
    let (addr, started) = (service.addr, Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..streams)
        .map(|index| {
            let started = started.clone();
            std::thread::spawn(move || {
                let words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen";
                let body = json!({"prompt": format!("{index} {words}"), "stream": true, "settings": {"max_tokens": 16}});
                let mut stream = NdjsonStream::post(addr, "/generate", &body);
                let first = stream.next_line();
                started.fetch_add(1, Ordering::Relaxed);
                let last = std::iter::once(first).flatten().chain(std::iter::from_fn(|| stream.next_line())).last();
                last.is_some_and(|(_, line)| line["done"] == true && line.get("error").is_none())
            })
        })
        .collect();
    while started.load(Ordering::Relaxed) < streams as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = service.terminate()?;
    let mut counts = Counts::default();
    for thread in threads {
        match thread.join() {
            Ok(true) => counts.ok += 1,
            _ => counts.lost += 1,
        }
    }
    let notes = format!(
        "SIGTERM after every stream's first line; exit status {status}; ok = the stream reached its done line"
    );
    Ok(FaultRow { fault: "SIGTERM with streams in flight".into(), counts, notes })
}

/// The rows as a Markdown table.
pub fn table(rows: &[FaultRow]) -> String {
    let mut out = String::from("| fault | sent | ok | failed | lost | notes |\n|---|---|---|---|---|---|\n");
    for row in rows {
        let Counts { ok, failed, lost } = row.counts;
        out.push_str(&format!(
            "| {} | {} | {ok} | {failed} | {lost} | {} |\n",
            row.fault,
            row.counts.sent(),
            row.notes
        ));
    }
    out
}

/// Whether no fault lost a request.
pub fn nothing_lost(rows: &[FaultRow]) -> bool {
    rows.iter().all(|row| row.counts.lost == 0)
}
