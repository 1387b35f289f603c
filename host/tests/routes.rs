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
    // Answered, not 405 (which HAProxy counts as down), saying what `/` takes.
    assert!(answer.starts_with("HTTP/1.0 204") || answer.starts_with("HTTP/1.1 204"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("allow: get, head, options"), "{answer}");
    let mut socket = std::net::TcpStream::connect(service.addr()).unwrap();
    socket.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"service\":\"llm-service\""), "{answer}");
}

#[test]
fn options_says_what_a_path_takes_as_haproxys_check_expects() {
    let (service, _ollama) = start();
    let root = Client::new().send("OPTIONS", &service.url("/"), b"");
    assert_eq!(root.status, 204, "HAProxy's default check counts a 405 as down");
    assert_eq!(root.header("allow"), Some("GET, HEAD, OPTIONS"));
    let generate = Client::new().send("OPTIONS", &service.url("/generate"), b"");
    assert_eq!((generate.status, generate.header("allow")), (204, Some("POST, OPTIONS")));
    assert_eq!(Client::new().send("OPTIONS", &service.url("/nope"), b"").status, 404);
}

/// A service with the admin API on under `token`.
fn with_admin(token: &str) -> (Service, FakeOllama) {
    let ollama = FakeOllama::start(&["test-model:1b"]);
    let service =
        Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).env("ADMIN_TOKEN", token).start();
    (service, ollama)
}

/// `GET /components` on the admin API with `authorization` as sent.
fn components(client: &Client, service: &Service, authorization: &str) -> llm_service_test_support::Reply {
    client.send_with_headers(
        "GET",
        &service.admin_url("/components"),
        &[("authorization", authorization)],
        b"",
    )
}

#[test]
fn the_admin_token_scheme_is_read_in_any_case() {
    let token = "any-case-scheme-token";
    let (service, _ollama) = with_admin(token);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = components(&Client::new(), &service, &format!("{scheme} {token}"));
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.body);
    }
    assert_eq!(components(&Client::new(), &service, &format!("Basic {token}")).status, 401);
}

#[test]
fn a_page_on_another_origin_cannot_switch_the_model_or_clear_the_cache() {
    let ollama = FakeOllama::start(&["test-model:1b", "other:1b"]);
    let service = Service::builder(BINARY)
        .env("OLLAMA_MODEL", "test-model:1b")
        .env("OLLAMA_BASE_URL", &ollama.url())
        .env("CORS_ALLOWED_ORIGINS", "https://ops.example")
        .start();
    let post = |path: &str, origin: Option<&str>, body: &[u8]| {
        let mut headers = vec![("content-type", "text/plain")];
        if let Some(origin) = origin {
            headers.push(("origin", origin));
        }
        Client::new().send_with_headers("POST", &service.url(path), &headers, body)
    };
    let switch = br#"{"model": "other:1b"}"#;
    for path in ["/model", "/cache/clear"] {
        let refused = post(path, Some("https://evil.example"), switch);
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert!(refused.json()["error"].as_str().unwrap().contains("CORS_ALLOWED_ORIGINS"));
    }
    let health = Client::new().get(&service.url("/health")).json();
    assert_eq!(health["model"], "test-model:1b", "the model did not change");
    // The service's own pages, the origins the operator named, and clients
    // that are no browser (no Origin, as the seed's curl) are served.
    let own = format!("http://{}", service.addr());
    assert_eq!(post("/cache/clear", Some(&own), b"").status, 200);
    assert_eq!(post("/cache/clear", Some("https://ops.example"), b"").status, 200);
    assert_eq!(post("/cache/clear", None, b"").status, 200);
    assert_eq!(post("/model", None, switch).status, 200);
    // Other routes are not mutations: a page may generate, as before.
    let generated = post("/generate", Some("https://evil.example"), br#"{"prompt": "hi"}"#);
    assert_eq!(generated.status, 200, "{}", generated.body);
}

#[test]
fn wrong_admin_tokens_past_the_limit_lock_the_address_out_and_are_logged_once() {
    let token = "the-right-admin-token";
    let (service, _ollama) = with_admin(token);
    let client = Client::new();
    let call = |token: &str| components(&client, &service, &format!("Bearer {token}"));
    assert_eq!(call(token).status, 200);
    let statuses: Vec<u16> = (0..30).map(|guess| call(&format!("wrong-guess-{guess:04}")).status).collect();
    assert!(statuses[..20].iter().all(|status| *status == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|status| *status == 429), "{statuses:?}");
    let locked = call(token);
    assert_eq!(locked.status, 429, "past the limit the token is not even checked");
    assert_eq!(locked.header("retry-after"), Some("10"));
    service.wait_for_log(std::time::Duration::from_secs(5), |line| {
        line["message"].as_str().is_some_and(|message| message.contains("too many wrong tokens"))
    });
    let warnings = service
        .logs()
        .iter()
        .filter(|line| {
            line["message"].as_str().is_some_and(|message| message.contains("too many wrong tokens"))
        })
        .count();
    assert_eq!(warnings, 1, "logged once, not per guess");
}
