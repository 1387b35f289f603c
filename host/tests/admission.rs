//! Admission control and containment: body limit, in-flight limit, runaway,
//! trapping and memory-hungry components. The process keeps serving.

use std::time::{Duration, Instant};

use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MISBEHAVE: &str = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");

/// Polls `url` until it answers 503, which shows the in-flight slots are
/// taken; returns that reply. Any other answer must be 200.
fn wait_for_503(client: &Client, url: &str) -> llm_service_test_support::Reply {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client.get(url);
        if reply.status == 503 {
            return reply;
        }
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(Instant::now() < until, "the in-flight limit was never reached");
    }
}

#[test]
fn oversized_bodies_get_413_and_the_next_request_is_served() {
    let service = Service::builder(BINARY).env("MAX_BODY_BYTES", "1024").start();
    let client = Client::new();
    let big = vec![b'x'; 4096];

    let reply = client.send("POST", &service.url("/health"), &big);
    assert_eq!(reply.status, 413, "declared length over the limit");
    assert!(reply.json()["error"].as_str().unwrap().contains("MAX_BODY_BYTES"));

    let reply = client.post_chunked(&service.url("/health"), &big);
    assert_eq!(reply.status, 413, "chunked body growing past the limit");

    let reply = client.send("POST", &service.url("/health"), &vec![b'x'; 1024]);
    assert_eq!(reply.status, 405, "a body at the limit reaches the handler");
}

#[test]
fn past_max_in_flight_is_503_with_retry_after() {
    let service = Service::builder(BINARY).component(MISBEHAVE).env("MAX_IN_FLIGHT", "2").start();
    let client = Client::new();
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (client.clone(), service.url("/sleep?ms=3000"));
            std::thread::spawn(move || client.get_admitted(&url))
        })
        .collect();

    // Not ready once both sleepers hold the two slots. /readyz takes no
    // slot, so polling it never keeps the second sleeper out (polling a
    // slot-taking path could, until the first sleeper was nearly done).
    let not_ready = wait_for_503(&client, &service.url("/readyz"));
    assert_eq!(not_ready.json()["status"].as_str(), Some("not ready"));
    // Meanwhile a request is refused, and the process is alive.
    let rejected = client.get(&service.url("/ping"));
    assert_eq!((rejected.status, rejected.header("retry-after")), (503, Some("1")));
    assert!(rejected.json()["error"].as_str().unwrap().contains("in-flight"));
    assert_eq!(client.get(&service.url("/livez")).status, 200);
    // The container health check says the same, with its exit code.
    let probe = |args: &[&str]| {
        std::process::Command::new(BINARY)
            .env_clear()
            .args(["probe", "--url", &service.url("")])
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!((probe(&[]), probe(&["--ready"])), (Some(0), Some(1)), "live, not ready");

    for sleeper in sleepers {
        let reply = sleeper.join().unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "slept 3000 ms"));
    }
    assert_eq!(client.get(&service.url("/ping")).status, 200, "slots are released");
    assert_eq!(client.get(&service.url("/readyz")).status, 200, "ready again");
}

#[test]
fn a_looping_component_gets_504_while_other_requests_succeed() {
    let service = Service::builder(BINARY).component(MISBEHAVE).env("REQUEST_TIMEOUT", "2").start();
    let client = Client::new();
    let looping = {
        let (client, url) = (client.clone(), service.url("/loop"));
        std::thread::spawn(move || client.get(&url))
    };
    for _ in 0..20 {
        let reply = client.get(&service.url("/ping"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "/ping"));
    }
    assert!(!looping.is_finished(), "the loop is still running while /ping is served");
    let reply = looping.join().unwrap();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("did not answer within 2s"));
    assert_eq!(client.get(&service.url("/ping")).status, 200);
}

#[test]
fn a_trapping_component_gets_500_and_the_next_request_succeeds() {
    let service = Service::builder(BINARY).component(MISBEHAVE).start();
    let client = Client::new();
    let reply = client.get(&service.url("/trap"));
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("handler failed"));
    assert!(!reply.body.contains("wasm"), "no guest internals reach the client: {}", reply.body);
    let request_id = reply.json()["request_id"].as_str().unwrap().to_string();
    assert_eq!(reply.header("x-request-id"), Some(request_id.as_str()));
    let logged = service.wait_for_log(Duration::from_secs(5), |line| line["status"] == 500);
    assert_eq!(logged["request_id"], request_id.as_str(), "the id finds the log line");
    assert!(logged["error"].as_str().unwrap_or_default().contains("wasm"), "the log has the trap: {logged}");
    assert!(
        logged["guest_output"].as_str().unwrap_or_default().contains("trapping on purpose"),
        "the guest's panic message is logged: {logged}"
    );
    assert_eq!(client.get(&service.url("/ping")).status, 200);
}

#[test]
fn a_component_past_its_memory_limit_gets_500_and_the_next_request_succeeds() {
    let service = Service::builder(BINARY)
        .component(MISBEHAVE)
        .env("MAX_INSTANCE_MEMORY", &(16 * 1024 * 1024).to_string())
        .start();
    let client = Client::new();
    let reply = client.get(&service.url("/grow"));
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(client.get(&service.url("/ping")).status, 200);
}
