//! Several model backends, against the real binary and three fake Ollama
//! nodes with different models, loaded models and latencies: routing by
//! model and load, slots and the queue, affinity, a node killed under load,
//! a node that hangs mid-stream, and a node added to BACKENDS_FILE.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::{Client, Reply, Service, fresh_directory, pool};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const WAIT: Duration = Duration::from_secs(20);

/// Node a serves m1 (loaded) and m2; b serves m1; c serves m3 (loaded).
struct Nodes {
    a: FakeOllama,
    b: FakeOllama,
    c: FakeOllama,
}

fn nodes() -> Nodes {
    let (a, b, c) =
        (FakeOllama::start(&["m1", "m2"]), FakeOllama::start(&["m1"]), FakeOllama::start(&["m3"]));
    a.set_loaded(&["m1"]);
    b.set_loaded(&[]);
    b.set_latency(Duration::from_millis(30));
    c.set_loaded(&["m3"]);
    Nodes { a, b, c }
}

fn node_entry(name: &str, node: &FakeOllama, slots: u32) -> String {
    format!("[[node]]\nname = \"{name}\"\nurl = \"{}\"\nslots = {slots}\n\n", node.url())
}

fn write_file(path: &Path, entries: &[String]) {
    // Written elsewhere and renamed in, as an operator's tool would.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, entries.concat()).unwrap();
    std::fs::rename(partial, path).unwrap();
}

fn start(file: &Path, extra: &[(&str, &str)]) -> Service {
    pool::start(BINARY, file, extra)
}

fn three_nodes(nodes: &Nodes, slots: u32, extra: &[(&str, &str)]) -> (Service, PathBuf) {
    let file = fresh_directory().with_extension("toml");
    let entries =
        [node_entry("a", &nodes.a, slots), node_entry("b", &nodes.b, slots), node_entry("c", &nodes.c, 1)];
    write_file(&file, &entries);
    (start(&file, extra), file)
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn generate(client: &Client, service: &Service, body: Value) -> Reply {
    client.send("POST", &service.url("/generate"), body.to_string().as_bytes())
}

fn node_of(reply: &Reply) -> &str {
    reply.header("x-backend-node").unwrap_or("none")
}

#[test]
fn calls_reach_only_nodes_with_the_model_and_prefer_the_one_that_has_it_loaded() {
    let nodes = nodes();
    let (service, _file) = three_nodes(&nodes, 2, &[]);
    for index in 0..6 {
        let reply =
            generate(&Client::new(), &service, json!({"prompt": format!("one {index}"), "model": "m1"}));
        assert_eq!((reply.status, node_of(&reply)), (200, "a"), "m1 is loaded on a: {}", reply.body);
    }
    let m3 = generate(&Client::new(), &service, json!({"prompt": "three", "model": "m3"}));
    assert_eq!((m3.status, node_of(&m3), m3.json()["model"].as_str()), (200, "c", Some("m3")));
    let m2 = generate(&Client::new(), &service, json!({"prompt": "two", "model": "m2"}));
    assert_eq!(node_of(&m2), "a");
    let missing = generate(&Client::new(), &service, json!({"prompt": "nowhere", "model": "m9"}));
    assert_eq!(missing.status, 404, "{}", missing.body);
    let generated = |node: &FakeOllama| node.generate_requests().len();
    assert_eq!((generated(&nodes.a), generated(&nodes.b), generated(&nodes.c)), (7, 0, 1));
    // The nodes' lists, merged.
    let tags = Client::new().get(&service.url("/api/tags")).json();
    let names: Vec<&str> =
        tags["models"].as_array().unwrap().iter().map(|model| model["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["m1", "m2", "m3"]);
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    assert!(metrics.contains("llm_service_backend_node_requests_total{node=\"c\"} 1"), "{metrics}");
}

#[test]
fn in_flight_per_node_stays_within_its_slots_and_excess_calls_queue_then_get_503() {
    let nodes = nodes();
    for node in [&nodes.a, &nodes.b] {
        node.set_latency(Duration::from_millis(800));
    }
    let (service, _file) = three_nodes(&nodes, 2, &[("MAX_QUEUED_GENERATIONS", "2")]);
    let service = Arc::new(service);
    let callers: Vec<_> = (0..8)
        .map(|index| {
            let service = service.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("busy {index}"), "model": "m1", "use_cache": false});
                generate(&Client::new(), &service, body).status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = callers.into_iter().map(|caller| caller.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 503, 503], "4 slots, 2 queued, 2 refused");
    assert!(nodes.a.max_concurrent_generations() <= 2 && nodes.b.max_concurrent_generations() <= 2);
    assert_eq!(nodes.a.generate_requests().len() + nodes.b.generate_requests().len(), 6);
}

#[test]
fn one_conversation_stays_on_its_node() {
    let nodes = nodes();
    nodes.b.set_loaded(&["m1"]);
    nodes.b.set_latency(Duration::ZERO);
    nodes.a.set_latency(Duration::from_millis(600));
    let (service, _file) = three_nodes(&nodes, 1, &[]);
    // Keep a busy so that the conversation's first turn lands on b.
    let busy = {
        let url = service.url("/generate");
        std::thread::spawn(move || {
            Client::new().send("POST", &url, br#"{"prompt": "hold a", "model": "m1"}"#).status
        })
    };
    eventually("a is busy", || nodes.a.open_generations() == 1);
    let turn = |index: usize| {
        let body = json!({"prompt": format!("turn {index}"), "model": "m1", "conversation_id": "chat-7"});
        node_of(&generate(&Client::new(), &service, body)).to_string()
    };
    assert_eq!(turn(0), "b");
    assert_eq!(busy.join().unwrap(), 200);
    // a is free again and would be first without the conversation's node.
    nodes.a.set_latency(Duration::ZERO);
    assert!((1..8).all(|index| turn(index) == "b"), "the conversation stayed on b");
    let other = json!({"prompt": "another chat", "model": "m1", "conversation_id": "chat-8"});
    assert_eq!(node_of(&generate(&Client::new(), &service, other)), "a");
}

#[test]
fn a_node_killed_under_load_fails_no_call_and_its_breaker_opens_then_closes() {
    let nodes = nodes();
    nodes.b.set_loaded(&["m1"]);
    let (service, _file) = three_nodes(&nodes, 4, &[]);
    let service = Arc::new(service);
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let (service, stop, served, failed) =
                (service.clone(), stop.clone(), served.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let body = json!({"prompt": format!("load {caller} {round}"), "model": "m1"});
                    let reply = generate(&Client::new(), &service, body);
                    let counter = if reply.status == 200 { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    eventually("load flows", || served.load(Ordering::Relaxed) > 20);
    nodes.a.set_offline(true);
    let status_of_a = || {
        let health = Client::new().get(&service.url("/health")).json();
        let a =
            health["backends"].as_array().unwrap().iter().find(|node| node["name"] == "a").cloned().unwrap();
        (health["status"].as_str().unwrap().to_string(), a["status"].as_str().unwrap().to_string())
    };
    eventually("a's breaker opens", || status_of_a() == ("degraded".to_string(), "down".to_string()));
    let served_while_down = served.load(Ordering::Relaxed);
    eventually("b serves alone", || served.load(Ordering::Relaxed) > served_while_down + 20);
    nodes.a.set_offline(false);
    eventually("a's breaker closes", || status_of_a() == ("healthy".to_string(), "up".to_string()));
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no call failed while a was down");
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    assert!(metrics.contains("llm_service_backend_node_circuit{node=\"a\"} 0"), "{metrics}");
    assert!(
        !metrics.contains("llm_service_backend_node_failures_total{node=\"a\"} 0"),
        "a's failures were counted"
    );
}

#[test]
fn a_node_that_hangs_after_its_first_chunk_ends_the_stream_with_an_error_line() {
    let nodes = nodes();
    let (service, _file) = three_nodes(&nodes, 1, &[("OLLAMA_READ_TIMEOUT", "1")]);
    nodes.c.fail_next(1, Fault::StallAfterFirstChunk);
    let body = json!({"prompt": "three words here", "model": "m3", "stream": true});
    let lines: Vec<Value> = NdjsonStream::post(service.addr(), "/generate", &body)
        .collect()
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let last = lines.last().expect("at least one line");
    assert!(last["error"].is_string(), "the stream ends with an error line: {lines:?}");
    assert!(lines.len() >= 2, "the first chunk came through first: {lines:?}");
    eventually("the node's stream was closed", || nodes.c.cancelled_streams() == 1);
}

#[test]
fn a_node_added_to_the_file_is_routed_to_without_a_restart() {
    let nodes = nodes();
    let file = fresh_directory().with_extension("toml");
    write_file(&file, &[node_entry("a", &nodes.a, 1)]);
    let service = start(&file, &[]);
    let ask_m3 = || generate(&Client::new(), &service, json!({"prompt": "three", "model": "m3"}));
    assert_eq!(ask_m3().status, 404, "no node has m3 yet");
    write_file(&file, &[node_entry("a", &nodes.a, 1), node_entry("c", &nodes.c, 1)]);
    eventually("c serves m3", || {
        let reply = ask_m3();
        reply.status == 200 && node_of(&reply) == "c"
    });
    write_file(&file, &[node_entry("c", &nodes.c, 1)]);
    eventually("a is gone", || {
        let health = Client::new().get(&service.url("/health")).json();
        health["backends"].as_array().is_some_and(|nodes| nodes.len() == 1)
    });
    let m1 = generate(&Client::new(), &service, json!({"prompt": "one", "model": "m1"}));
    assert_eq!(m1.status, 404, "only c is left, and it has no m1");
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    assert!(!metrics.contains("node=\"a\""), "a removed node keeps no series:\n{metrics}");
    assert!(metrics.contains("node=\"c\""), "{metrics}");
    std::fs::write(&file, "[[node]]\nurl = 5\n").unwrap();
    service
        .wait_for_log(WAIT, |line| line["message"] == "BACKENDS_FILE refused; the nodes stay as they were");
    assert_eq!(ask_m3().status, 200, "a refused file changes nothing");
    std::fs::remove_file(&file).unwrap();
    service.wait_for_log(WAIT, |line| {
        line["message"] == "BACKENDS_FILE cannot be read; the nodes stay as they were"
    });
    assert_eq!(ask_m3().status, 200, "a deleted file changes nothing either, and says so");
}

#[test]
fn a_comma_separated_url_list_is_a_pool_of_one_slot_nodes() {
    let nodes = nodes();
    let urls = format!("{},{}", nodes.a.url(), nodes.c.url());
    let service = Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &urls), ("OLLAMA_MODEL", "m1"), ("HEALTH_CHECK_INTERVAL", "0.2")])
        .start();
    eventually("both lists are known", || {
        Client::new().get(&service.url("/models")).json()["models"]
            .as_array()
            .is_some_and(|models| models.len() == 3)
    });
    let m3 = generate(&Client::new(), &service, json!({"prompt": "three", "model": "m3"}));
    assert_eq!((m3.status, node_of(&m3)), (200, nodes.c.url().trim_start_matches("http://")));
    assert_eq!(generate(&Client::new(), &service, json!({"prompt": "one"})).status, 200, "OLLAMA_MODEL m1");
}

#[test]
fn a_name_without_a_tag_reaches_the_node_that_lists_its_latest() {
    let (plain, tagged) = (FakeOllama::start(&["m1"]), FakeOllama::start(&["mistral:latest"]));
    let file = fresh_directory().with_extension("toml");
    write_file(&file, &[node_entry("plain", &plain, 2), node_entry("tagged", &tagged, 2)]);
    let service = start(&file, &[]);
    for model in ["mistral", "mistral:latest"] {
        let body = json!({"model": model, "stream": false, "messages": [{"role": "user", "content": model}]});
        let reply = Client::new().send("POST", &service.url("/api/chat"), body.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{model}: {}", reply.body);
    }
    assert_eq!(tagged.chat_requests().len(), 2, "both spellings went to the node listing mistral:latest");
    assert!(plain.chat_requests().is_empty());
}
