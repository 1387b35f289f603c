//! Outlier ejection, against the real binary and three fake Ollama nodes
//! that all serve one model: a node that answers fast with junk, one that
//! refuses everything with a 400, and one that hangs are moved away from
//! (the calls succeed on the others) and ejected although their listings
//! stay fine, and come back once healed; a 400 that every node gives is the
//! client's and ejects nobody.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::{Client, Service, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const WAIT: Duration = Duration::from_secs(30);

/// Healthy `a` and `b` (50 ms to answer) and `c`, the one that will
/// misbehave (instant): one slot each.
fn pool(extra: &[(&str, &str)]) -> ([FakeOllama; 3], Service) {
    let nodes = [FakeOllama::start(&["m1"]), FakeOllama::start(&["m1"]), FakeOllama::start(&["m1"])];
    for node in &nodes[..2] {
        node.set_latency(Duration::from_millis(50));
    }
    let file = fresh_directory().with_extension("toml");
    let entries: String = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(name, node)| format!("[[node]]\nname = \"{name}\"\nurl = \"{}\"\nslots = 1\n\n", node.url()))
        .collect();
    std::fs::write(&file, entries).unwrap();
    let service = start(&file, extra);
    (nodes, service)
}

fn start(file: &Path, extra: &[(&str, &str)]) -> Service {
    let service = llm_service_test_support::pool::start(BINARY, file, extra);
    eventually("every node is up", || ["a", "b", "c"].iter().all(|name| status_of(&service, name) == "up"));
    service
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `name`'s status in /health: up or down.
fn status_of(service: &Service, name: &str) -> String {
    let health = Client::new().get(&service.url("/health")).json();
    let nodes = health["backends"].as_array().cloned().unwrap_or_default();
    let node = nodes.iter().find(|node| node["name"] == name).cloned().unwrap_or_default();
    node["status"].as_str().unwrap_or("unknown").to_string()
}

/// One `/api/generate` call (streamed or whole): the node that answered,
/// if the answer is a good one (200, text, a done line, no error).
fn call(service: &Service, prompt: &str, stream: bool) -> Result<String, String> {
    let body = json!({"model": "m1", "prompt": prompt, "stream": stream});
    if !stream {
        let reply = Client::new().send("POST", &service.url("/api/generate"), body.to_string().as_bytes());
        let text = reply.json()["response"].as_str().unwrap_or_default().to_string();
        return match (reply.status, text.is_empty()) {
            (200, false) => Ok(reply.header("x-backend-node").unwrap_or("none").to_string()),
            _ => Err(format!("{} {}", reply.status, reply.body)),
        };
    }
    let stream = NdjsonStream::post(service.addr(), "/api/generate", &body);
    let node = stream.header("x-backend-node").unwrap_or("none").to_string();
    let lines: Vec<Value> = stream.collect().into_iter().map(|(_, line)| line).collect();
    let text: String = lines.iter().filter_map(|line| line["response"].as_str()).collect();
    let done = lines.last().is_some_and(|last| last["done"] == true && last.get("error").is_none());
    if done && !text.is_empty() { Ok(node) } else { Err(format!("{lines:?}")) }
}

/// `callers` threads make `each` calls apiece, half of them streamed:
/// the failures, and the good answers by node.
fn load(service: &Arc<Service>, callers: usize, each: usize) -> (Vec<String>, BTreeMap<String, usize>) {
    // Every call's prompt is new: a cache hit is answered by no node.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let by_node = Arc::new(Mutex::new(BTreeMap::new()));
    let threads: Vec<_> = (0..callers)
        .map(|caller| {
            let (service, failures, by_node) = (service.clone(), failures.clone(), by_node.clone());
            std::thread::spawn(move || {
                for index in 0..each {
                    let unique = CALLS.fetch_add(1, Ordering::Relaxed);
                    match call(&service, &format!("words of caller {caller} call {unique}"), index % 2 == 1) {
                        Ok(node) => *by_node.lock().unwrap().entry(node).or_insert(0) += 1,
                        Err(failure) => failures.lock().unwrap().push(failure),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let by_node = by_node.lock().unwrap().clone();
    (failures, by_node)
}

fn failures_of(service: &Service, name: &str) -> u64 {
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    let prefix = format!("llm_service_backend_node_failures_total{{node=\"{name}\"}} ");
    metrics.lines().find_map(|line| line.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
}

/// With `fault` on c, 8 callers × 25 calls: at least 99% good, c ejected
/// after a few calls, and c back once healed.
fn one_bad_node_among_three(fault: Fault) {
    let (nodes, service) = pool(&[]);
    let service = Arc::new(service);
    nodes[2].set_fault(Some(fault));
    let (failures, by_node) = load(&service, 8, 25);
    assert!(
        failures.len() <= 2,
        "at least 99% of 200 calls succeed: {} failed: {failures:?}",
        failures.len()
    );
    let bad_calls = nodes[2].requests().iter().filter(|request| request.path == "/api/generate").count();
    assert!(bad_calls <= 20, "c was moved away from: it drew {bad_calls} of 200 calls ({by_node:?})");
    assert!(failures_of(&service, "c") >= 3, "c's bad answers counted against it");
    assert!(!by_node.contains_key("c"), "no good answer came from c: {by_node:?}");
    healed_and_back(&nodes[2], &service);
}

/// Heals `bad` (c): under load it serves again, once its breaker's trial
/// (after 5 s) succeeds; idle calls would all go to a, the first of equals.
fn healed_and_back(bad: &FakeOllama, service: &Arc<Service>) {
    bad.set_fault(None);
    eventually("c serves again once healed", || load(service, 4, 3).1.contains_key("c"));
    // The trial's verdict is taken when its answer's body ends, which may be
    // just after the caller has read it.
    eventually("c is up once its trial succeeded", || status_of(service, "c") == "up");
}

#[test]
fn a_node_answering_junk_fast_is_ejected_and_the_calls_succeed_elsewhere() {
    one_bad_node_among_three(Fault::Junk);
}

#[test]
fn a_node_refusing_everything_with_400_is_ejected_and_the_calls_succeed_elsewhere() {
    one_bad_node_among_three(Fault::Status(400));
}

#[test]
fn a_hanging_node_is_left_before_the_deadline_and_ejected_though_its_listing_answers() {
    let (nodes, service) = pool(&[("REQUEST_TIMEOUT", "4")]);
    let service = Arc::new(service);
    nodes[2].set_fault(Some(Fault::Hang));
    // Each hang holds c's one slot for about half of the 4 s: the others
    // answer many calls meanwhile.
    for _round in 0..10 {
        let (failures, by_node) = load(&service, 3, 4);
        assert!(failures.is_empty(), "every call moved off the hanging node in time: {failures:?}");
        assert!(!by_node.contains_key("c"), "no answer came from c: {by_node:?}");
        if failures_of(&service, "c") >= 3 {
            break;
        }
    }
    assert!(failures_of(&service, "c") >= 3, "c's hangs counted against it");
    // The refresh (every 0.2 s) finds c's listing fine; c stays out.
    eventually("c is down", || status_of(&service, "c") == "down");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        assert_eq!(status_of(&service, "c"), "down", "a listing that answers does not bring c back");
    }
    healed_and_back(&nodes[2], &service);
}

#[test]
fn a_400_every_node_gives_is_the_clients_and_ejects_nobody() {
    let (nodes, service) = pool(&[]);
    for node in &nodes {
        node.set_fault(Some(Fault::Status(400)));
    }
    for round in 0..5 {
        let body = json!({"model": "m1", "prompt": format!("refused {round}"), "stream": false});
        let reply = Client::new().send("POST", &service.url("/api/generate"), body.to_string().as_bytes());
        assert_eq!(reply.status, 400, "the backend's refusal is relayed: {}", reply.body);
        assert!(reply.json()["error"].as_str().is_some_and(|error| error.contains("fault: status 400")));
    }
    let asked: usize =
        nodes.iter().map(|node| node.requests().iter().filter(|r| r.path == "/api/generate").count()).sum();
    assert_eq!(asked, 10, "each refusal got one second opinion, no more");
    for name in ["a", "b", "c"] {
        assert_eq!((name, status_of(&service, name).as_str()), (name, "up"));
        assert_eq!(failures_of(&service, name), 0, "{name} was not blamed for the client's mistake");
    }
}
