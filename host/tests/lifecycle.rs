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
