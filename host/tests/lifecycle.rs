//! Start-up configuration errors, `--help`, and graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MISBEHAVE: &str = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");

/// Runs the binary with one bad variable; returns (exit code, stderr).
/// Runs the binary with only `key=value` (and PATH) set.
fn run_with(key: &str, value: &str) -> (Option<i32>, String) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let output = Command::new(BINARY).env_clear().env("PATH", path).env(key, value).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The perf map a process with `pid` wrote (empty if none), removed.
fn take_perf_map(pid: u32) -> String {
    let map = std::path::PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let listed = std::fs::read_to_string(&map).unwrap_or_default();
    let _ = std::fs::remove_file(&map);
    listed
}

#[test]
fn guest_perf_map_names_the_handlers_compiled_functions_for_perf_and_is_off_by_default() {
    let mapped = Service::builder(BINARY).env("GUEST_PERF_MAP", "true").start();
    let listed = take_perf_map(mapped.pid());
    assert!(listed.lines().any(|line| line.contains("wasm[")), "{}", &listed[..listed.len().min(300)]);
    let plain = Service::builder(BINARY).start();
    assert_eq!(take_perf_map(plain.pid()), "", "no map unless asked for");
}

#[test]
fn a_bad_value_stops_the_start_with_one_line_and_exit_code_2() {
    for (key, value) in [
        ("LLM_SERVICE_PORT", "abc"),
        ("LLM_RESPONSE_CACHE_TTL", "-5"),
        ("REQUEST_TIMEOUT", "0"),
        ("OLLAMA_BASE_URL", "localhost:11434"),
        ("MAX_CONCURRENT_REQUESTS", "many"),
    ] {
        let (code, stderr) = run_with(key, value);
        assert_eq!(code, Some(2), "{key}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{key}={value}: one line, got {stderr:?}");
        assert!(stderr.contains(key) && stderr.contains(value), "{key}={value}: {stderr}");
    }
}

#[test]
fn an_admin_token_under_16_characters_stops_the_start() {
    for token in ["", "s3cret"] {
        let (code, stderr) = run_with("ADMIN_TOKEN", token);
        assert_eq!(code, Some(2), "{token:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line, got {stderr:?}");
        assert!(stderr.contains("ADMIN_TOKEN") && stderr.contains("at least 16 characters"), "{stderr}");
    }
}

#[test]
fn help_documents_every_seed_variable() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    // The seed's variables, and the limits every operator sets first.
    const SEED_VARIABLES: &[&str] = &[
        "LLM_SERVICE_PORT",
        "OLLAMA_BASE_URL",
        "OLLAMA_MODEL",
        "REDIS_URL",
        "LLM_RESPONSE_CACHE_TTL",
        "MAX_CONCURRENT_REQUESTS",
        "REQUEST_TIMEOUT",
        "CACHE_MAX_SIZE",
        "MAX_BODY_BYTES",
        "MAX_IN_FLIGHT",
        "SHUTDOWN_GRACE_PERIOD",
    ];
    for variable in SEED_VARIABLES {
        assert!(help.contains(&format!("[env: {variable}")), "--help lacks {variable}:\n{help}");
    }
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    // One slot: a 503 on a probe proves the slow request is in flight.
    let mut service = Service::builder(BINARY).component(MISBEHAVE).env("MAX_IN_FLIGHT", "1").start();
    let client = Client::new();
    let slow = {
        let (client, url) = (client.clone(), service.url("/sleep?ms=1500"));
        std::thread::spawn(move || client.get_admitted(&url))
    };
    let until = Instant::now() + Duration::from_secs(20);
    while client.get(&service.url("/probe")).status != 503 {
        assert!(Instant::now() < until, "the slow request never became in flight");
    }

    service.terminate();
    let reply = slow.join().unwrap();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "slept 1500 ms"),
        "the in-flight request completes"
    );
    let status = service.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(service.addr()).is_err(), "the listener is closed");
    service.wait_for_log(Duration::from_secs(1), |line| {
        line["message"] == "all in-flight requests finished; exiting"
    });
}

/// A stream read raw from its first bytes: what it said up to its end.
struct RawStream {
    reader: std::io::BufReader<std::net::TcpStream>,
    text: String,
}

impl RawStream {
    /// Posts `body` to `path` and reads until `first` has arrived.
    fn open(addr: std::net::SocketAddr, path: &str, body: &serde_json::Value, first: &str) -> Self {
        use std::io::{BufRead, Write};
        let mut socket = std::net::TcpStream::connect(addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        socket.write_all(format!("{head}{body}").as_bytes()).unwrap();
        let mut stream = Self { reader: std::io::BufReader::new(socket), text: String::new() };
        while !stream.text.contains(first) {
            let mut line = String::new();
            assert!(
                stream.reader.read_line(&mut line).unwrap() > 0,
                "{path} ended before {first}: {}",
                stream.text
            );
            stream.text.push_str(&line);
        }
        stream
    }

    /// The rest, to its end.
    fn rest(mut self) -> String {
        use std::io::Read;
        self.reader.read_to_string(&mut self.text).unwrap();
        self.text
    }
}

#[test]
fn streams_still_running_past_the_grace_period_end_with_their_dialects_error() {
    let ollama = llm_service_test_support::fake_ollama::FakeOllama::start(&["m1"]);
    ollama.set_token_delay(Duration::from_millis(300));
    let mut service = Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("OLLAMA_MODEL", "m1"), ("SHUTDOWN_GRACE_PERIOD", "1")])
        .start();
    let words =
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen";
    let messages = serde_json::json!([{"role": "user", "content": words}]);
    let streams = [
        ("/generate", serde_json::json!({"prompt": words, "stream": true}), "\"response\""),
        (
            "/api/chat",
            serde_json::json!({"model": "m1", "messages": messages, "stream": true}),
            "\"content\"",
        ),
        (
            "/v1/chat/completions",
            serde_json::json!({"model": "m1", "messages": messages, "stream": true}),
            "\"content\":\"one",
        ),
        (
            "/v1/messages",
            serde_json::json!({"model": "m1", "max_tokens": 64, "messages": messages, "stream": true}),
            "text_delta",
        ),
    ];
    let open: Vec<(&str, RawStream)> = streams
        .iter()
        .map(|(path, body, first)| (*path, RawStream::open(service.addr(), path, body, first)))
        .collect();
    service.terminate();
    for (path, stream) in open {
        let text = stream.rest();
        let last = text.lines().rev().find(|line| line.contains('{')).unwrap_or_default().to_string();
        assert!(
            last.contains("error") && last.contains("shutting down") && !last.contains("InternalError"),
            "{path}'s last event is its dialect's error, saying why: {last}\n{text}"
        );
    }
    assert_eq!(service.wait_exit(Duration::from_secs(20)).code(), Some(0));
    service.wait_for_log(Duration::from_secs(1), |line| {
        line["message"] == "grace period over with requests still in flight; exiting"
    });
}
