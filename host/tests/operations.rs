//! What operators see: /metrics (JSON and Prometheus), /health from the
//! background checks, model listing, switching and validation, and the
//! per-generation log line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Reply, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";

fn service(ollama: &FakeOllama, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).envs(extra).start()
}

fn generate(service: &Service, body: &Value) -> Reply {
    service.generate(body)
}

/// Polls GET /health until `accept` takes it, failing after `deadline`.
fn health_until(service: &Service, deadline: Duration, accept: impl Fn(&Reply) -> bool) -> Reply {
    let until = Instant::now() + deadline;
    loop {
        let reply = Client::new().get(&service.url("/health"));
        if accept(&reply) {
            return reply;
        }
        assert!(Instant::now() < until, "/health never got there; last: {} {}", reply.status, reply.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `name{labels} value` lines of the Prometheus text format; panics on a
/// line that is neither that nor a comment.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or_default();
            assert!(kind == "HELP" || kind == "TYPE", "bad comment line: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

fn sum_of(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{name}{{")) || *series == name)
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_after_three_misses_and_seven_hits() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    for index in 0..3 {
        let prompt = format!("prompt number {index}");
        assert_eq!(generate(&service, &json!({"prompt": prompt, "character_name": "peter"})).status, 200);
    }
    for index in 0..7 {
        let prompt = format!("prompt number {}", index % 3);
        let reply = generate(&service, &json!({"prompt": prompt, "character_name": "peter"}));
        assert_eq!(reply.header("x-cache"), Some("HIT"));
    }
    let metrics = Client::new().get(&service.url("/metrics")).json();
    assert_eq!(metrics["requests_total"], 10);
    assert_eq!(metrics["cache_hit_rate"], 0.7);
    assert_eq!(metrics["cache_hits"], 7);
    assert_eq!(metrics["tokens_generated_total"], 3 * 3, "three words per miss; hits generate nothing");
    assert_eq!(metrics["characters"]["peter"], 10);
    assert_eq!(metrics["ollama_status"], "healthy");
    assert!(metrics["average_response_time"].as_f64().unwrap() > 0.0);
    assert!(
        metrics["latency_seconds"]["p99"].as_f64().unwrap()
            >= metrics["latency_seconds"]["p50"].as_f64().unwrap()
    );
    let uptime = metrics["uptime"].as_str().unwrap();
    assert!(uptime.starts_with("0h 0m ") && uptime.ends_with('s'), "{uptime}");
    let memory = metrics["memory_usage"].as_str().unwrap();
    assert!(memory.ends_with("MB") || memory.ends_with("GB"), "{memory}");

    // The JSON request above is the 11th; Prometheus must agree with it.
    let reply =
        Client::new().send_with_headers("GET", &service.url("/metrics"), &[("accept", "text/plain")], b"");
    assert!(reply.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let samples = parse_prometheus(&reply.body);
    assert_eq!(sum_of(&samples, "llm_service_requests_total"), 11.0);
    assert_eq!(samples["llm_service_requests_total{endpoint=\"/generate\",status=\"200\"}"], 10.0);
    assert_eq!(samples["llm_service_cache_hits_total"], 7.0);
    assert_eq!(samples["llm_service_cache_misses_total"], 3.0);
    assert_eq!(samples["llm_service_tokens_generated_total"], 9.0);
    assert_eq!(samples["llm_service_request_duration_seconds_count"], 11.0);
    assert_eq!(samples["llm_service_request_duration_seconds_bucket{le=\"+Inf\"}"], 11.0);
    let same = Client::new().get(&service.url("/metrics/prometheus"));
    assert!(same.body.contains("# TYPE llm_service_request_duration_seconds histogram"));
}

#[test]
fn health_turns_unhealthy_when_the_backend_stops_and_back_when_it_returns() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("HEALTH_CHECK_INTERVAL", "0.2")]);
    health_until(&service, Duration::from_secs(10), |reply| {
        reply.status == 200 && reply.json()["status"] == "healthy"
    });
    ollama.set_offline(true);
    let down = health_until(&service, Duration::from_secs(10), |reply| reply.status == 503);
    // The gateway still serves (its cache, its errors): alive and ready.
    assert_eq!(Client::new().get(&service.url("/livez")).json()["status"], "alive");
    let ready = Client::new().get(&service.url("/readyz"));
    assert_eq!((ready.status, ready.json()["status"].as_str()), (200, Some("ready")));
    assert_eq!(down.json()["status"], "unhealthy");
    assert_eq!(down.json()["ollama_status"], "disconnected");
    ollama.set_offline(false);
    let up = health_until(&service, Duration::from_secs(10), |reply| reply.status == 200);
    assert_eq!(up.json()["ollama_status"], "connected");
}

#[test]
fn validate_model_reports_a_present_and_a_missing_model() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let client = Client::new();
    let present = client.send("POST", &service.url("/validate-model"), b"").json();
    assert_eq!(present["model_available"], true, "{present}");
    assert_eq!(present["model_name"], MODEL);
    assert_eq!(present["model_size"], "4.7GB");
    let score = present["performance_score"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&score), "{present}");
    assert!(humantime::parse_rfc3339(present["last_validation"].as_str().unwrap()).is_ok());
    assert_eq!(ollama.generate_requests().last().unwrap()["stream"], true, "a timed streamed generation");

    let missing = client.send("POST", &service.url("/validate-model"), br#"{"model": "nope:1b"}"#).json();
    assert_eq!(missing["model_available"], false);
    assert_eq!(missing["model_name"], "nope:1b");
    assert_eq!(missing["performance_score"], 0.0);
}

#[test]
fn switching_the_model_changes_the_next_generation_and_empties_the_cache() {
    let ollama = FakeOllama::start(&[MODEL, "other:1b"]);
    let redis = RedisServer::start();
    let service = service(&ollama, &[("REDIS_URL", &redis.url())]);
    let client = Client::new();
    assert_eq!(generate(&service, &json!({"prompt": "before the switch"})).status, 200);
    assert_eq!(redis.answer_count(), 1);
    let models = client.get(&service.url("/models")).json();
    let names: Vec<&str> =
        models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, [MODEL, "other:1b"]);

    let missing = client.send("POST", &service.url("/model"), br#"{"model": "nope:1b"}"#);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"], "model 'nope:1b' not found");

    let switched = client.send("POST", &service.url("/model"), br#"{"model": "other:1b"}"#);
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(switched.json(), json!({"model": "other:1b", "previous": MODEL, "cache_cleared": 1}));
    assert_eq!(redis.answer_count(), 0, "the cache is empty after a switch");
    assert_eq!(
        redis.command("GET {llm-service}:model").lines().nth(1),
        Some("other:1b"),
        "the fleet's model"
    );
    assert_eq!(generate(&service, &json!({"prompt": "after the switch"})).json()["model"], "other:1b");
    assert_eq!(ollama.generate_requests().last().unwrap()["model"], "other:1b");
    assert_eq!(client.get(&service.url("/health")).json()["model"], "other:1b");
    assert_eq!(client.get(&service.url("/metrics")).json()["model"], "other:1b");
}

#[test]
fn a_generation_log_line_has_the_seed_fields_and_no_prompt_text() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let prompt = "a very secret prompt text";
    let body = json!({"prompt": prompt, "character_name": "stewie"}).to_string();
    let reply = Client::new().send_with_headers(
        "POST",
        &service.url("/generate"),
        &[("x-request-id", "req-42")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("req-42"));
    let line = service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "LLM Request");
    assert_eq!(line["request_id"], "req-42");
    assert_eq!(line["character"], "stewie");
    assert_eq!(line["prompt_length"], prompt.chars().count());
    assert_eq!(line["cache_hit"], false);
    assert_eq!(line["tokens_generated"], 5);
    assert_eq!(line["model"], MODEL);
    assert_eq!(line["status"], 200);
    assert!(line["response_time"].as_f64().is_some());
    let everything = service.logs().iter().map(Value::to_string).collect::<String>();
    assert!(!everything.contains("secret prompt"), "prompt text leaked into the logs");

    let generated = Client::new().get(&service.url("/health"));
    let id = generated.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32, "a request id is made up when absent: {id}");
}

#[test]
fn log_prompts_lets_the_prompt_into_the_log_line() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("LOG_PROMPTS", "true")]);
    assert_eq!(generate(&service, &json!({"prompt": "log me please"})).status, 200);
    let line = service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "LLM Request");
    assert_eq!(line["prompt"], "log me please");
}

#[test]
fn a_cache_hit_writes_a_debug_line_not_an_info_line() {
    let ollama = FakeOllama::start(&[MODEL]);
    let quiet = service(&ollama, &[("RUST_LOG", "info")]);
    let body = json!({"prompt": "asked twice"});
    assert_eq!(generate(&quiet, &body).header("x-cache"), Some("MISS"));
    assert_eq!(generate(&quiet, &body).header("x-cache"), Some("HIT"));
    // A later miss's line comes after anything the hit wrote.
    generate(&quiet, &json!({"prompt": "asked once"}));
    quiet.wait_for_log(Duration::from_secs(5), |line| line["prompt_length"] == 10);
    let lines: Vec<Value> =
        quiet.logs().into_iter().filter(|line| line["message"] == "LLM Request").collect();
    assert_eq!(lines.len(), 2, "only the misses have an info line: {lines:?}");
    assert!(lines.iter().all(|line| line["cache_hit"] == false), "{lines:?}");
    assert_eq!(Client::new().get(&quiet.url("/metrics")).json()["cache_hits"], 1, "the hit is counted");

    let debug = service(&ollama, &[("RUST_LOG", "info,llm_service::generate=debug")]);
    generate(&debug, &body);
    generate(&debug, &body);
    let hit = debug.wait_for_log(Duration::from_secs(5), |line| {
        line["message"] == "LLM Request" && line["cache_hit"] == true
    });
    assert_eq!(hit["level"], "DEBUG");
}

#[test]
fn invented_character_names_cannot_grow_the_metrics_without_bound() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    for index in 0..130 {
        let body = json!({"prompt": "hello", "character_name": format!("invented-{index}")});
        assert_eq!(generate(&service, &body).status, 200);
    }
    let text = Client::new().get(&service.url("/metrics/prometheus")).body;
    let series = text.lines().filter(|line| line.starts_with("llm_service_generations_total{")).count();
    assert_eq!(series, 101, "a hundred characters and other");
    assert!(text.contains("llm_service_generations_total{character=\"other\"} 30"), "{text}");
    let characters = Client::new().get(&service.url("/metrics")).json()["characters"].clone();
    assert_eq!(characters.as_object().unwrap().len(), 101);
}
