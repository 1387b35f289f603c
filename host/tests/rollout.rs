//! Safe change, against the real binary: canary handler versions (the
//! split, automatic rollback, promote and drop under load), the model A/B
//! split (seen at the fake Ollama) and the sampled quality checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Reply, Service, component_variant, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
const FAILING_GENERATE: &str = env!("LLM_SERVICE_TEST_PROGRAM_FAILING_GENERATE");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-rollout-tests";
const WAIT: Duration = Duration::from_secs(20);

fn service(ollama: &FakeOllama, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("OLLAMA_MODEL", MODEL), ("ADMIN_TOKEN", TOKEN)])
        .envs(extra)
        .start()
}

fn admin(service: &Service, method: &str, path: &str, body: &[u8]) -> Reply {
    service.admin(TOKEN, method, path, body)
}

fn tag(reply: &Reply) -> String {
    reply.header("x-handler-version").expect("X-Handler-Version").to_string()
}

/// Starts a canary of the built-in handler (a variant labelled `label`) at
/// `percent`; its version tag.
fn start_canary(service: &Service, label: &str, percent: u32) -> String {
    let candidate = component_variant(HANDLER, &fresh_directory(), label);
    let path = format!("/components/handler/canary?percent={percent}");
    let started = admin(service, "PUT", &path, &std::fs::read(candidate).unwrap());
    assert_eq!(started.status, 200, "{}", started.body);
    assert_eq!(started.json()["percent"], percent);
    started.json()["sha256"].as_str().unwrap()[..12].to_string()
}

fn health_with_id(client: &Client, service: &Service, id: &str) -> Reply {
    client.send_with_headers("GET", &service.url("/health"), &[("x-request-id", id)], b"")
}

/// Polls `check` until it holds or [`WAIT`] passes.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_twenty_percent_canary_serves_about_a_fifth_and_one_request_id_one_version() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let client = Client::new();
    let stable = tag(&client.get(&service.url("/health")));
    let canary = start_canary(&service, "canary", 20);

    let mut served: HashMap<String, usize> = HashMap::new();
    for index in 0..1_000 {
        *served.entry(tag(&health_with_id(&client, &service, &format!("request-{index}")))).or_default() += 1;
    }
    let on_canary = served.get(&canary).copied().unwrap_or(0);
    assert!((120..=280).contains(&on_canary), "the canary served {on_canary} of 1000: {served:?}");
    assert_eq!(served[&stable] + on_canary, 1_000);
    for index in [3, 77, 512] {
        let id = format!("request-{index}");
        let first = tag(&health_with_id(&client, &service, &id));
        assert!((0..10).all(|_| tag(&health_with_id(&client, &service, &id)) == first), "{id} moved");
    }
    // The split and the counters are visible to operators.
    let components = admin(&service, "GET", "/components", b"").json();
    assert_eq!(components["canary"]["percent"], 20);
    assert!(components["canary"]["answers"].as_u64().unwrap() >= on_canary as u64, "{components}");
    let metrics = client.get(&service.url("/metrics/prometheus")).body;
    assert!(
        metrics.contains(&format!("llm_service_handler_answers_total{{class=\"2xx\",version=\"{canary}\"}}"))
    );

    // The share changes in place, down to 0.
    assert_eq!(admin(&service, "PUT", "/components/handler/canary?percent=0", b"").status, 200);
    assert!(
        (0..50).all(|index| tag(&health_with_id(&client, &service, &format!("again-{index}"))) == stable)
    );
    assert_eq!(admin(&service, "PUT", "/components/handler/canary?percent=101", b"").status, 400);
}

#[test]
fn a_canary_failing_generate_is_dropped_once_its_window_fills_without_a_restart() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("CANARY_MIN_REQUESTS", "20")]);
    let client = Client::new();
    let stable = tag(&client.get(&service.url("/health")));
    // Read before the canary starts: it answers /metrics too.
    let uptime_before = client.get(&service.url("/metrics")).json()["uptime_seconds"].clone();
    let pushed = admin(
        &service,
        "PUT",
        "/components/handler/canary?percent=50",
        &std::fs::read(FAILING_GENERATE).unwrap(),
    );
    assert_eq!(pushed.status, 200, "the smoke check passes: {}", pushed.body);

    let (mut failures, mut sent) = (0, 0);
    while admin(&service, "GET", "/components", b"").json()["canary"] != Value::Null {
        assert!(sent < 400, "the canary is still serving after {sent} requests");
        let body = json!({"prompt": format!("question {sent}")}).to_string();
        let reply = client.send_with_headers(
            "POST",
            &service.url("/generate"),
            &[("x-request-id", &format!("g-{sent}"))],
            body.as_bytes(),
        );
        failures += usize::from(reply.status == 500);
        sent += 1;
    }
    let dropped = service.wait_for_log(WAIT, |line| line["message"] == "handler canary dropped");
    assert_eq!(failures, 20, "dropped as its window (CANARY_MIN_REQUESTS) filled: {dropped}");
    for index in 0..20 {
        let reply = client.send_with_headers(
            "POST",
            &service.url("/generate"),
            &[("x-request-id", &format!("after-{index}"))],
            br#"{"prompt": "after"}"#,
        );
        assert_eq!(
            (reply.status, tag(&reply)),
            (200, stable.clone()),
            "the stable version serves everything"
        );
    }
    let dropped = service.wait_for_log(WAIT, |line| line["message"] == "handler canary dropped");
    assert_eq!(dropped["reason"], "errors", "{dropped}");
    let metrics = client.get(&service.url("/metrics/prometheus")).body;
    assert!(metrics.contains("llm_service_canary_drops_total{reason=\"errors\"} 1"), "{metrics}");
    let uptime_after = client.get(&service.url("/metrics")).json()["uptime_seconds"].clone();
    assert!(uptime_after.as_f64() >= uptime_before.as_f64(), "the same process kept serving");
}

#[test]
fn promote_and_drop_under_load_fail_no_request() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = Arc::new(service(&ollama, &[]));
    let dir = fresh_directory();
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..6)
        .map(|index| {
            let (stop, served, failed, service) =
                (stop.clone(), served.clone(), failed.clone(), service.clone());
            std::thread::spawn(move || {
                let client = Client::new();
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let id = format!("load-{index}-{round}");
                    let reply = client.send_with_headers(
                        "POST",
                        &service.url("/generate"),
                        &[("x-request-id", &id)],
                        br#"{"prompt": "load"}"#,
                    );
                    let counter = if reply.status == 200 { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let canary_of = |label: &str| {
        let candidate = std::fs::read(component_variant(HANDLER, &dir, label)).unwrap();
        let reply = admin(&service, "PUT", "/components/handler/canary?percent=50", &candidate);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["sha256"].as_str().unwrap().to_string()
    };
    let promoted = canary_of("promoted");
    std::thread::sleep(Duration::from_millis(300));
    let reply = admin(&service, "POST", "/components/handler/promote", b"");
    assert_eq!((reply.status, reply.json()["sha256"].as_str()), (200, Some(promoted.as_str())));
    assert_eq!(
        tag(&Client::new().get(&service.url("/health"))),
        promoted[..12],
        "the promoted version serves all"
    );
    let dropped = canary_of("dropped");
    std::thread::sleep(Duration::from_millis(300));
    let reply = admin(&service, "DELETE", "/components/handler/canary", b"");
    assert_eq!(reply.json()["dropped"]["sha256"], dropped);
    assert_eq!(
        admin(&service, "DELETE", "/components/handler/canary", b"").status,
        409,
        "nothing left to drop"
    );
    assert_eq!(admin(&service, "POST", "/components/handler/promote", b"").status, 409);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during promote and drop");
    assert!(served.load(Ordering::Relaxed) > 50, "load kept flowing");
    let components = admin(&service, "GET", "/components", b"").json();
    assert_eq!(
        (components["active"]["sha256"].as_str(), &components["canary"]),
        (Some(promoted.as_str()), &Value::Null)
    );
}

#[test]
fn a_fifty_fifty_model_split_sends_each_model_about_half_and_keeps_conversations() {
    let ollama = FakeOllama::start(&["model-a", "model-b"]);
    let service = service(&ollama, &[("MODEL_SPLIT", "model-a=50,model-b=50")]);
    let client = Client::new();
    let mut answered_by: HashMap<String, usize> = HashMap::new();
    for index in 0..200 {
        let body =
            json!({"prompt": format!("split question {index}"), "conversation_id": format!("chat-{index}")});
        let reply = client.send("POST", &service.url("/generate"), body.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
        *answered_by.entry(reply.json()["model"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let mut at_backend: HashMap<String, usize> = HashMap::new();
    for request in ollama.generate_requests() {
        *at_backend.entry(request["model"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(at_backend, answered_by, "the answer's model is the one that served");
    for model in ["model-a", "model-b"] {
        assert!((70..=130).contains(&at_backend[model]), "{model}: {at_backend:?}");
    }
    // One conversation, one model, turn after turn.
    let models: Vec<String> = (0..8)
        .map(|turn| {
            let body = json!({"prompt": format!("turn {turn}"), "conversation_id": "one-chat"});
            client.send("POST", &service.url("/generate"), body.to_string().as_bytes()).json()["model"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(models.iter().all(|model| *model == models[0]), "{models:?}");
    let metrics = client.get(&service.url("/metrics/prometheus")).body;
    for model in ["model-a", "model-b"] {
        let series = format!("llm_service_model_generations_total{{model=\"{model}\",outcome=\"ok\"}}");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    let health = client.get(&service.url("/health")).json();
    assert_eq!(health["model_split"], json!({"model-a": 50, "model-b": 50}));

    // At runtime: checked against the backend, then in force; POST /model ends it.
    assert_eq!(admin(&service, "PUT", "/model-split", br#"{"split": "model-a=1,missing=1"}"#).status, 404);
    assert_eq!(admin(&service, "PUT", "/model-split", br#"{"split": "model-a=x"}"#).status, 400);
    let set = admin(&service, "PUT", "/model-split", br#"{"split": "model-b=100"}"#);
    assert_eq!(set.status, 200, "{}", set.body);
    let reply = client.send("POST", &service.url("/generate"), br#"{"prompt": "now b only"}"#);
    assert_eq!(reply.json()["model"], "model-b");
    assert_eq!(client.send("POST", &service.url("/model"), br#"{"model": "model-a"}"#).status, 200);
    assert_eq!(admin(&service, "GET", "/model-split", b"").json()["split"], Value::Null);
    let reply = client.send("POST", &service.url("/generate"), br#"{"prompt": "now a again"}"#);
    assert_eq!(reply.json()["model"], "model-a");
}

#[test]
fn empty_answers_turn_health_quality_degraded_and_recovery_turns_it_ok() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("QUALITY_CHECK_INTERVAL", "0.3")]);
    let client = Client::new();
    let quality = || client.get(&service.url("/health")).json();
    eventually("the first round passes", || quality()["quality"] == "ok");
    ollama.set_reply(Some(""));
    eventually("empty answers degrade quality", || quality()["quality"] == "degraded");
    let health = quality();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["quality_failure"].as_str().unwrap().contains("non_empty"), "{health}");
    let metrics = client.get(&service.url("/metrics/prometheus")).body;
    assert!(metrics.contains(&format!("llm_service_quality_pass_ratio{{model=\"{MODEL}\"}} 0")), "{metrics}");
    ollama.set_reply(None);
    eventually("recovery turns it ok", || quality()["quality"] == "ok");
    assert_eq!(quality()["status"], "healthy");
    // /validate-model applies the same checks on demand.
    let validated = client.send("POST", &service.url("/validate-model"), br#"{"max_tokens": 4}"#).json();
    assert_eq!(validated["quality"], "ok", "{validated}");
    assert_eq!(validated["checks"]["within_max_tokens"], true);
    assert_eq!(client.send("POST", &service.url("/validate-model"), br#"{"max_tokens": 0}"#).status, 400);
}

#[test]
fn a_ten_percent_canary_behind_keep_alive_connections_gets_its_share() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let canary = start_canary(&service, "keep-alive", 10);
    // 16 clients, each on its own keep-alive connection, sending neither
    // X-Request-Id nor conversation_id (as the shipped nginx profile does).
    let url = service.url("/health");
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (url, canary) = (url.clone(), canary.clone());
            std::thread::spawn(move || {
                let client = Client::new();
                (0..125).filter(|_| tag(&client.get(&url)) == canary).count()
            })
        })
        .collect();
    let on_canary: usize = clients.into_iter().map(|client| client.join().unwrap()).sum();
    assert!(
        (160..=240).contains(&on_canary),
        "the canary served {on_canary} of 2000 (10% ± 2 is 160 to 240)"
    );
}
