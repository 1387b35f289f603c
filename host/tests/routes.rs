//! The default handler's routes, served by the real binary.

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");

fn start() -> (Service, FakeOllama) {
    let ollama = FakeOllama::start(&["test-model:1b"]);
    let service = Service::builder(BINARY)
        .env("OLLAMA_MODEL", "test-model:1b")
        .env("OLLAMA_BASE_URL", &ollama.url())
        .start();
    (service, ollama)
}

#[test]
fn health_has_the_seed_shape() {
    let (service, _ollama) = start();
    // The first background check runs at start-up; until it answers the
    // backend is "unknown".
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reply = loop {
        let reply = Client::new().get(&service.url("/health"));
        if reply.json()["ollama_status"] != "unknown" || std::time::Instant::now() > until {
            break reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let health = reply.json();
    let keys: Vec<&str> = health.as_object().unwrap().keys().map(String::as_str).collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, ["cache_status", "model", "ollama_status", "service", "status", "timestamp"]);
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "llm-service");
    assert_eq!(health["model"], "test-model:1b", "the model comes from OLLAMA_MODEL via the host");
    assert_eq!(health["ollama_status"], "connected");
    assert_eq!(health["cache_status"], "in-process", "no REDIS_URL: the process tier alone");
    let timestamp = health["timestamp"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(timestamp).unwrap_or_else(|e| panic!("{timestamp}: {e}"));
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap_or_default();
    assert!(age.as_secs() < 3600, "timestamp {timestamp} is the current time");
}

#[test]
fn unknown_path_is_404_json() {
    let (service, _ollama) = start();
    let reply = Client::new().get(&service.url("/no-such-thing"));
    assert_eq!(reply.status, 404);
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("/no-such-thing"), "{error}");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let (service, _ollama) = start();
    let reply = Client::new().send("DELETE", &service.url("/health"), b"");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    assert!(reply.json()["error"].as_str().unwrap().contains("DELETE"));
}

#[test]
fn startup_line_names_port_component_sha256_and_compile_time() {
    let (service, _ollama) = start();
    let line = service
        .wait_for_log(std::time::Duration::from_secs(5), |line| line["message"] == "llm-service listening");
    assert_eq!(line["port"].as_u64(), Some(u64::from(service.addr().port())));
    assert!(line["component"].as_str().unwrap().contains("handler.wasm"), "{line}");
    let sha256 = line["sha256"].as_str().unwrap();
    assert_eq!(sha256.len(), 64);
    assert!(sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(line["compile_ms"].is_u64(), "{line}");
}

#[test]
fn an_http_1_0_health_check_without_host_is_answered() {
    use std::io::{Read, Write};
    let (service, _ollama) = start();
    let mut socket = std::net::TcpStream::connect(service.addr()).unwrap();
    // What HAProxy's default `option httpchk` sends.
    socket.write_all(b"OPTIONS / HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    // `/` is Ollama's liveness path, for GET and HEAD only.
    assert!(answer.starts_with("HTTP/1.0 405") || answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("allow: get, head"), "{answer}");
    let mut socket = std::net::TcpStream::connect(service.addr()).unwrap();
    socket.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"service\":\"llm-service\""), "{answer}");
}
