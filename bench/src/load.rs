//! The load generator: HTTP/1.1 keep-alive connections from a tokio
//! runtime, two modes. Fixed concurrency keeps N connections each sending
//! its next request as soon as the last answer is read (throughput).
//! Fixed rate starts requests on a schedule whatever the answers do, and
//! measures each from the moment it was due, so a stall shows in the
//! percentiles instead of hiding (no coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One kind of request, sent over and over.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where.
    pub addr: SocketAddr,
    /// `GET` or `POST`.
    pub method: http::Method,
    /// The path.
    pub path: String,
    /// The body (empty for GET).
    pub body: Bytes,
    /// Headers sent besides Host and Content-Type.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Target {
    /// `GET path` at `addr`.
    pub fn get(addr: SocketAddr, path: &str) -> Self {
        Self { addr, method: http::Method::GET, path: path.into(), body: Bytes::new(), headers: Vec::new() }
    }

    /// `POST path` with a JSON `body` at `addr`.
    pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Self {
        let body = Bytes::from(body.to_string());
        Self { addr, method: http::Method::POST, path: path.into(), body, headers: Vec::new() }
    }

    /// The same request with the header `name: value` too.
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        let value = http::HeaderValue::from_str(value).expect("a valid header value");
        self.headers.push((http::HeaderName::from_static(name), value));
        self
    }

    /// The request to send.
    pub fn request(&self) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::builder()
            .method(self.method.clone())
            .uri(format!("http://{}{}", self.addr, self.path))
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .expect("a valid request");
        request.headers_mut().extend(self.headers.iter().cloned());
        request
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Other statuses, and connections that failed.
    pub errors: u64,
    /// How long the measurement ran.
    pub elapsed: Duration,
    /// Latency of the 2xx answers, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Report {
    fn new() -> Self {
        Self {
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
        }
    }

    fn merge(&mut self, other: &Report) {
        self.ok += other.ok;
        self.errors += other.errors;
        let _ = self.latency_us.add(&other.latency_us);
    }

    fn record(&mut self, status: Option<http::StatusCode>, latency: Duration) {
        match status {
            Some(status) if status.is_success() => {
                self.ok += 1;
                let _ = self.latency_us.record(latency.as_micros().max(1) as u64);
            }
            _ => self.errors += 1,
        }
    }

    /// Successful answers per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The `quantile` latency in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// Sends one request and reads the whole answer; its status, or `None` if
/// the connection failed (the caller reconnects).
async fn exchange(sender: &mut SendRequest<Full<Bytes>>, target: &Target) -> Option<http::StatusCode> {
    sender.ready().await.ok()?;
    let response = sender.send_request(target.request()).await.ok()?;
    let status = response.status();
    response.into_body().collect().await.ok()?;
    Some(status)
}

/// `connections` connections send `target` back to back for `warmup` (not
/// measured), then for `duration`.
pub async fn fixed_concurrency(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Report {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut report = Report::new();
                let mut sender = None;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        return report;
                    }
                    if sender.is_none() {
                        sender = connect(target.addr).await;
                    }
                    let Some(live) = sender.as_mut() else {
                        report.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let status = exchange(live, &target).await;
                    if status.is_none() {
                        sender = None;
                    }
                    if now >= start {
                        report.record(status, now.elapsed());
                    }
                }
            })
        })
        .collect();
    let mut total = Report::new();
    for worker in workers {
        if let Ok(report) = worker.await {
            total.merge(&report);
        }
    }
    total.elapsed = duration;
    total
}

/// Starts `rate` requests per second for `duration` (after `warmup`),
/// taking the `targets` in turn, each request timed from when it was due;
/// one report per target. Interleaving puts every target under the same
/// conditions at the same moments, so their difference is theirs alone.
pub async fn fixed_rate(targets: &[Target], rate: u32, warmup: Duration, duration: Duration) -> Vec<Report> {
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build_http();
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let reports: Vec<_> = targets.iter().map(|_| Arc::new(Mutex::new(Report::new()))).collect();
    let begin = Instant::now();
    let start = begin + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    let mut due = begin;
    for turn in (0..targets.len()).cycle() {
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let (client, target, report) = (client.clone(), targets[turn].clone(), reports[turn].clone());
        let measured = due >= start;
        tasks.push(tokio::spawn(async move {
            let status = match client.request(target.request()).await {
                Ok(response) => {
                    let status = response.status();
                    response.into_body().collect().await.ok().map(|_| status)
                }
                Err(_) => None,
            };
            if measured {
                report.lock().await.record(status, due.elapsed());
            }
        }));
        due += interval;
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut out = Vec::new();
    for report in reports {
        let mut report = report.lock().await.clone();
        report.elapsed = duration;
        out.push(report);
    }
    out
}

/// Sends `count` requests at once, each on its own connection, taking
/// `targets` in turn.
pub async fn burst(targets: &[Target], count: usize) -> Report {
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let target = targets[index % targets.len()].clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let status = match connect(target.addr).await {
                    Some(mut sender) => exchange(&mut sender, &target).await,
                    None => None,
                };
                (status, started.elapsed())
            })
        })
        .collect();
    let started = Instant::now();
    let mut report = Report::new();
    for task in tasks {
        if let Ok((status, latency)) = task.await {
            report.record(status, latency);
        }
    }
    report.elapsed = started.elapsed();
    report
}
