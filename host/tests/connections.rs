//! Connections cannot take the service down: slow or silent ones are
//! closed, past the cap new ones are refused at once, and bodies that
//! trickle in hold no slot that other requests need.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
/// How long a test waits for the service to close a connection: far past
/// the timeouts the tests set, so only a service that never closes fails.
const CLOSE_DEADLINE: Duration = Duration::from_secs(15);

fn service(extra: &[(&str, &str)]) -> (Service, FakeOllama) {
    let ollama = FakeOllama::start(&["m"]);
    let service = Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).envs(extra).start();
    (service, ollama)
}

fn connect(service: &Service) -> TcpStream {
    let socket = TcpStream::connect(service.addr()).unwrap();
    socket.set_read_timeout(Some(CLOSE_DEADLINE)).unwrap();
    socket
}

/// Reads until the peer closes; what it sent. Fails if it never closes.
fn read_until_closed(socket: &mut TcpStream) -> String {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&received).into_owned();
            }
            Err(error) => panic!("the service kept the connection open {:?}: {error}", started.elapsed()),
        }
    }
}

/// The status line of the answer on `socket`.
fn status_line(socket: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match socket.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("no status line ({other:?}) after {:?}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

#[test]
fn a_request_head_that_never_ends_is_closed() {
    let (service, _ollama) = service(&[("HEADER_READ_TIMEOUT_MS", "300")]);
    let mut slow = connect(&service);
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").unwrap();
    read_until_closed(&mut slow);
    let mut silent = connect(&service);
    read_until_closed(&mut silent);
    assert_eq!(Client::new().get(&service.url("/health")).status, 200);
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let (service, _ollama) = service(&[("HEADER_READ_TIMEOUT_MS", "300")]);
    let mut socket = connect(&service);
    socket.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let answered = read_until_closed(&mut socket);
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

#[test]
fn past_the_connection_cap_new_connections_are_closed_at_once() {
    let (service, _ollama) = service(&[("MAX_CONNECTIONS", "3"), ("HEADER_READ_TIMEOUT_MS", "60000")]);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(&service)).collect();
    // Each held connection answers a request, so all three are counted.
    for socket in &mut held {
        socket.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        socket.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let mut refused = connect(&service);
    let _ = refused.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
    assert_eq!(read_until_closed(&mut refused), "", "closed without an answer");
    drop(held.pop());
    let until = Instant::now() + CLOSE_DEADLINE;
    while Client::new().try_get(&service.url("/health")).map(|reply| reply.status) != Ok(200) {
        assert!(Instant::now() < until, "a freed slot was never reused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn trickling_bodies_hold_no_slot_health_needs_and_end_in_408() {
    let (service, _ollama) = service(&[
        ("MAX_IN_FLIGHT", "2"),
        ("BODY_READ_TIMEOUT_MS", "1000"),
        ("HEADER_READ_TIMEOUT_MS", "60000"),
    ]);
    let mut trickling: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut socket = connect(&service);
            socket
                .write_all(b"POST /generate HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"prompt\":")
                .unwrap();
            socket
        })
        .collect();
    for _ in 0..5 {
        let health = Client::new().get(&service.url("/health"));
        assert_eq!(health.status, 200, "{}", health.body);
    }
    let statuses: Vec<String> = trickling.iter_mut().map(status_line).collect();
    assert!(
        statuses.iter().all(|status| status.contains(" 408 ") || status.contains(" 503 ")),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|status| status.contains(" 408 ")), "{statuses:?}");
}

#[test]
fn with_descriptors_scarce_a_flood_neither_exhausts_them_nor_floods_the_log() {
    let ollama = FakeOllama::start(&["m"]);
    let service = Service::builder(BINARY)
        .env("OLLAMA_BASE_URL", &ollama.url())
        .env("ADMIN_TOKEN", "connections-admin-token")
        .env("HEADER_READ_TIMEOUT_MS", "60000")
        .open_files_limit(400)
        .start();
    let admin: std::net::SocketAddr = service.admin_url("").trim_start_matches("http://").parse().unwrap();
    // A monitor's connection, made before the flood.
    let monitor = Client::new();
    assert_eq!(monitor.get(&service.url("/health")).status, 200);
    let flood: Vec<TcpStream> = (0..600)
        .flat_map(|_| [TcpStream::connect(service.addr()).ok(), TcpStream::connect(admin).ok()])
        .flatten()
        .collect();
    for _ in 0..5 {
        assert_eq!(monitor.get(&service.url("/health")).status, 200, "the monitor is still answered");
    }
    drop(flood);
    let trouble = service
        .logs()
        .iter()
        .filter(|line| {
            let message = line["message"].as_str().unwrap_or_default();
            message.contains("accept failed") || message.contains("connection cap reached")
        })
        .count();
    assert!(trouble <= 10, "{trouble} accept warnings: the loop must back off, not spin");
    let refused_cap = service
        .logs()
        .iter()
        .any(|line| line["message"] == "MAX_CONNECTIONS cut to fit the open-files limit (ulimit -n)");
    assert!(refused_cap, "the cap was cut to the open-files limit");
}

#[test]
fn silent_sockets_filling_both_caps_make_way_for_a_new_client_and_an_operator() {
    let ollama = FakeOllama::start(&["m"]);
    let token = "connections-admin-token";
    // 1024 descriptors: the service port's cap is 1024 - 256 - 64 = 704.
    let service = Service::builder(BINARY)
        .env("OLLAMA_BASE_URL", &ollama.url())
        .env("ADMIN_TOKEN", token)
        .env("HEADER_READ_TIMEOUT_MS", "60000")
        .open_files_limit(1024)
        .start();
    let admin: std::net::SocketAddr = service.admin_url("").trim_start_matches("http://").parse().unwrap();
    let mut silent: Vec<TcpStream> =
        (0..1000).filter_map(|_| TcpStream::connect(service.addr()).ok()).collect();
    silent.extend((0..64).filter_map(|_| TcpStream::connect(admin).ok()));
    assert!(silent.len() >= 1000, "the flood is up: {} sockets", silent.len());
    for _ in 0..3 {
        let client = Client::new().get(&service.url("/health"));
        assert_eq!(client.status, 200, "a new client is answered: {}", client.body);
        let operator = service.admin(token, "GET", "/service/health", b"");
        assert_eq!(operator.status, 200, "an operator is answered: {}", operator.body);
    }
    // The room was made by shedding silent sockets: some were closed.
    let closed = |socket: &mut TcpStream| {
        socket.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        match socket.read(&mut [0u8; 1]) {
            Ok(0) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    };
    let shed = silent.iter_mut().map(closed).filter(|was| *was).count();
    assert!(shed >= 2, "{shed} silent sockets were shed");
}

#[test]
fn heads_hyper_refuses_are_answered_with_a_json_error() {
    let (service, _ollama) = service(&[]);
    // Well past hyper's read buffer (about 400 KiB): a head just over it
    // can still be parsed when the read that completes it overshoots the
    // bound, so 500 KB was answered 200 now and then.
    let too_large = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(2_000_000));
    let too_many: String = (0..200).map(|index| format!("x-h{index}: 1\r\n")).collect();
    let cases = [
        (too_large, "431"),
        (format!("GET /health HTTP/1.1\r\n{too_many}\r\n"), "431"),
        ("GARBAGE\r\n\r\n".to_string(), "400"),
    ];
    for (request, status) in cases {
        let mut socket = connect(&service);
        let _ = socket.write_all(request.as_bytes());
        let answer = read_until_closed(&mut socket);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let error: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert!(
            error["error"].as_str().is_some_and(|words| !words.is_empty()),
            "a reason in words: {answer}"
        );
    }
    assert_eq!(Client::new().get(&service.url("/health")).status, 200);
}

/// The service's resident memory in MB, as /metrics says it.
fn memory_mb(service: &Service) -> f64 {
    let metrics = Client::new().get(&service.url("/metrics")).json();
    metrics["memory_usage"].as_str().and_then(|text| text.trim_end_matches("MB").parse().ok()).unwrap_or(0.0)
}

#[test]
fn memory_taken_by_a_flood_of_connections_is_given_back_once_it_drains() {
    let (service, _ollama) = service(&[]);
    let idle = memory_mb(&service);
    let mut flood: Vec<TcpStream> =
        (0..4000).filter_map(|_| TcpStream::connect(service.addr()).ok()).collect();
    for socket in &mut flood {
        let _ = socket.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n");
    }
    // Each is answered (or, past the accept queue, closed): read it.
    let answered = flood
        .iter_mut()
        .map(|socket| {
            let mut head = [0u8; 12];
            socket.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
        })
        .filter(|answered| *answered)
        .count();
    assert!(answered >= 1000, "{answered} of the flood's requests were answered");
    let held = memory_mb(&service);
    assert!(held > idle + 20.0, "the flood took memory: {idle} MB idle, {held} MB held");
    drop(flood);
    let until = Instant::now() + CLOSE_DEADLINE;
    let halfway = idle + (held - idle) / 2.0;
    while memory_mb(&service) > halfway {
        assert!(Instant::now() < until, "{idle} MB idle, {held} MB held, {} MB after", memory_mb(&service));
        std::thread::sleep(Duration::from_millis(200));
    }
}
