//! OpenTelemetry traces against the real binary and a receiver that
//! decodes the real OTLP/HTTP protobuf: the spans at each seam, their
//! GenAI attributes, the client's `traceparent` continued down to the
//! backend, flights linked, canaries named, nothing exported without an
//! endpoint, and a dead receiver costing no request.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::otlp::{OtlpReceiver, ReceivedSpan};
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Reply, Service, component_variant, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
const PETER: &str = env!("LLM_SERVICE_PLUGIN_PETER");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-trace-tests";
/// Generous: spans leave every 100 ms, the machine may be loaded.
const WAIT: Duration = Duration::from_secs(30);

const REQUEST: &str = "llm_service.server.request";
const HANDLER_CALL: &str = "llm_service.handler.call";
const LOOKUP: &str = "llm_service.cache.lookup";
const LAND: &str = "llm_service.cache.land";
const BACKEND: &str = "llm_service.backend.send";

fn traced(ollama: &FakeOllama, receiver: &OtlpReceiver, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("OLLAMA_MODEL", MODEL),
            ("ADMIN_TOKEN", TOKEN),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "gateway-under-test"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
        ])
        .envs(extra)
        .start()
}

/// A trace id of the test's own, and the `traceparent` of a client span in it.
fn client_trace(seed: u8) -> (String, String, String) {
    let trace_id = format!("{seed:02x}4bf92f3577b34da6a3ce929d0e0e47");
    let span_id = format!("{:02x}f067aa0ba902b7", seed);
    let traceparent = format!("00-{trace_id}-{span_id}-01");
    (trace_id, span_id, traceparent)
}

fn post_traced(service: &Service, path: &str, body: &Value, traceparent: &str) -> Reply {
    let headers = [("traceparent", traceparent), ("content-type", "application/json")];
    Client::new().send_with_headers("POST", &service.url(path), &headers, body.to_string().as_bytes())
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|span| span.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span in {spans:#?}");
    found[0]
}

/// The backend call to `path` among `spans`.
fn backend_call<'a>(spans: &'a [ReceivedSpan], path: &str) -> &'a ReceivedSpan {
    let found: Vec<_> =
        spans.iter().filter(|span| span.name == BACKEND && span.text("url.path") == Some(path)).collect();
    assert_eq!(found.len(), 1, "one call to {path} in {spans:#?}");
    found[0]
}

fn number(span: &ReceivedSpan, key: &str) -> f64 {
    span.attributes.get(key).and_then(Value::as_f64).unwrap_or_else(|| panic!("{key} on {span:#?}"))
}

#[test]
fn a_generate_miss_is_traced_from_the_clients_traceparent_to_the_backend_and_a_hit_too() {
    let (ollama, receiver) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start());
    let service = traced(&ollama, &receiver, &[]);
    let (trace_id, client_span, traceparent) = client_trace(1);
    let body = json!({"prompt": "trace this question", "character_name": "Peter", "use_cache": true});
    let reply = post_traced(&service, "/generate", &body, &traceparent);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spans = receiver.trace_with(&trace_id, REQUEST, WAIT);

    let root = one(&spans, REQUEST);
    assert_eq!(root.parent_span_id, client_span, "the client's span is the request's parent");
    assert_eq!(root.kind, 2, "a server span");
    assert_eq!(root.text("http.request.method"), Some("POST"));
    assert_eq!(root.text("url.path"), Some("/generate"));
    assert_eq!(number(root, "http.response.status_code"), 200.0);
    assert_eq!(root.text("llm_service.cache.tier"), Some("miss"));
    assert_eq!(root.text("llm_service.request_id"), reply.header("x-request-id"));
    assert_eq!(root.text("llm_service.handler.version"), reply.header("x-handler-version"));
    assert_eq!(root.resource.get("service.name"), Some(&json!("gateway-under-test")));
    assert_eq!(root.resource.get("deployment.environment"), Some(&json!("test")));

    let call = one(&spans, HANDLER_CALL);
    assert_eq!(call.parent_span_id, root.span_id);
    for (key, value) in [
        ("gen_ai.operation.name", "text_completion"),
        ("gen_ai.provider.name", "ollama"),
        ("gen_ai.request.model", MODEL),
        ("gen_ai.response.model", MODEL),
        ("llm_service.character", "Peter"),
        ("llm_service.endpoint", "/generate"),
        ("llm_service.cache.tier", "miss"),
        ("llm_service.flight.role", "leader"),
    ] {
        assert_eq!(call.text(key), Some(value), "{key} on {call:#?}");
    }
    assert_eq!(call.attributes.get("llm_service.handler.canary"), Some(&json!(false)));
    assert_eq!(call.attributes.get("llm_service.cache.hit"), Some(&json!(false)));
    assert!(number(call, "gen_ai.usage.output_tokens") > 0.0);
    assert!(number(call, "gen_ai.usage.input_tokens") > 0.0, "the fake reports prompt tokens");
    assert!(number(call, "gen_ai.request.temperature") >= 0.0);
    assert!(number(call, "gen_ai.request.max_tokens") > 0.0);
    assert_eq!(call.attributes.get("gen_ai.response.finish_reasons"), Some(&json!(["stop"])));
    assert!(
        !call.attributes.contains_key("gen_ai.input.messages"),
        "no prompt in a trace unless OTEL_GENAI_CAPTURE_CONTENT is set"
    );

    let lookup = spans.iter().find(|span| span.name == LOOKUP).expect("a cache lookup");
    assert_eq!(lookup.parent_span_id, call.span_id);
    assert_eq!(lookup.text("llm_service.flight.role"), Some("leader"));
    assert_eq!(one(&spans, LAND).parent_span_id, call.span_id);

    let backend = backend_call(&spans, "/api/generate");
    assert_eq!(backend.parent_span_id, call.span_id);
    assert_eq!(backend.kind, 3, "a client span");
    assert_eq!(backend.text("server.address"), Some("127.0.0.1"));
    assert_eq!(number(backend, "http.response.status_code"), 200.0);
    assert_eq!(number(backend, "llm_service.backend.attempts"), 1.0);
    assert!(backend.events.iter().any(|event| event == "llm_service.backend.first_token"), "{backend:#?}");
    let generation = ollama.requests().into_iter().find(|request| request.path == "/api/generate").unwrap();
    assert_eq!(
        generation.traceparent.as_deref(),
        Some(format!("00-{trace_id}-{}-01", backend.span_id).as_str()),
        "the backend's request carries the backend span as its parent"
    );
    let line = service.wait_for_log(WAIT, |line| line["message"] == "LLM Request");
    assert_eq!(line["trace_id"], json!(trace_id), "{line}");
    assert_eq!(line["span_id"], json!(call.span_id), "{line}");

    // The same question again: the handler's hit from the process tier.
    let (hit_trace, _, traceparent) = client_trace(2);
    let reply = post_traced(&service, "/generate", &body, &traceparent);
    assert_eq!(reply.header("cache-status"), Some("llm-service; hit; detail=memory"), "{}", reply.body);
    let spans = receiver.trace_with(&hit_trace, REQUEST, WAIT);
    assert_eq!(one(&spans, REQUEST).text("llm_service.cache.tier"), Some("memory"));
    let call = one(&spans, HANDLER_CALL);
    assert_eq!(call.attributes.get("llm_service.cache.hit"), Some(&json!(true)));
    assert_eq!(one(&spans, LOOKUP).text("llm_service.cache.tier"), Some("memory"));
    assert!(spans.iter().all(|span| span.name != BACKEND), "a hit calls no backend: {spans:#?}");
    assert_eq!(receiver.undecodable(), 0);
}

#[test]
fn a_streamed_chat_is_one_trace_until_its_last_chunk_with_content_when_allowed() {
    let (ollama, receiver) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start());
    let (answer, delay) = ("one two three four", Duration::from_millis(20));
    ollama.set_reply(Some(answer));
    ollama.set_token_delay(delay);
    let service = traced(&ollama, &receiver, &[("OTEL_GENAI_CAPTURE_CONTENT", "true")]);
    let (trace_id, _, traceparent) = client_trace(3);
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "count to four"}]});
    let reply = post_traced(&service, "/api/chat", &body, &traceparent);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spans = receiver.trace_with(&trace_id, REQUEST, WAIT);
    let (root, call, backend) =
        (one(&spans, REQUEST), one(&spans, HANDLER_CALL), backend_call(&spans, "/api/chat"));
    assert_eq!(call.text("gen_ai.operation.name"), Some("chat"));
    assert_eq!(call.attributes.get("llm_service.stream"), Some(&json!(true)));
    let input: Value = serde_json::from_str(call.text("gen_ai.input.messages").unwrap()).unwrap();
    assert_eq!(input[0]["role"], "user");
    assert_eq!(input[0]["parts"][0]["content"], "count to four");
    let output: Value = serde_json::from_str(call.text("gen_ai.output.messages").unwrap()).unwrap();
    assert_eq!(output[0]["parts"][0]["content"], "one two three four");
    // The request's span covers the stream: the fake waits `delay` before
    // each token, so its last line leaves at least that many delays after
    // the backend call began. (The backend's own span may end a moment
    // after the request's: it closes at the stream's end of file, read
    // after the done line the handler answers from.)
    let streamed = delay * answer.split(' ').count() as u32;
    let covered = |span: &ReceivedSpan| span.start_end_ns.1.saturating_sub(backend.start_end_ns.0);
    assert!(covered(root) >= streamed.as_nanos() as u64, "{root:#?} {backend:#?}");
    assert!(covered(call) >= streamed.as_nanos() as u64, "{call:#?} {backend:#?}");
}

#[test]
fn a_canary_request_names_the_canary_and_a_follower_links_to_its_leader() {
    let (ollama, receiver) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start());
    // Long enough, on a loaded machine too, for the second request to
    // find the first one's flight under way.
    ollama.set_reply(Some("slow enough to follow"));
    ollama.set_token_delay(Duration::from_millis(400));
    let service = traced(&ollama, &receiver, &[]);
    let candidate = component_variant(HANDLER, &fresh_directory(), "traced-canary");
    let started = service.admin(
        TOKEN,
        "PUT",
        "/components/handler/canary?percent=100",
        &std::fs::read(candidate).unwrap(),
    );
    assert_eq!(started.status, 200, "{}", started.body);
    let canary = started.json()["sha256"].as_str().unwrap()[..12].to_string();

    let body = json!({"prompt": "asked twice at once", "use_cache": true});
    let ((leader_trace, _, leader_parent), (follower_trace, _, follower_parent)) =
        (client_trace(4), client_trace(5));
    let (leader, follower) = std::thread::scope(|scope| {
        let leader = scope.spawn(|| post_traced(&service, "/generate", &body, &leader_parent));
        let deadline = Instant::now() + WAIT;
        while ollama.open_generations() == 0 {
            assert!(Instant::now() < deadline, "the leader's generation did not start");
            std::thread::yield_now();
        }
        let follower = post_traced(&service, "/generate", &body, &follower_parent);
        (leader.join().unwrap(), follower)
    });
    assert_eq!((leader.status, follower.status), (200, 200), "{} {}", leader.body, follower.body);
    assert_eq!(ollama.generate_requests().len(), 1);

    let leading = receiver.trace_with(&leader_trace, REQUEST, WAIT);
    let following = receiver.trace_with(&follower_trace, REQUEST, WAIT);
    for spans in [&leading, &following] {
        let call = one(spans, HANDLER_CALL);
        assert_eq!(call.attributes.get("llm_service.handler.canary"), Some(&json!(true)), "{call:#?}");
        assert_eq!(call.text("llm_service.handler.version"), Some(canary.as_str()));
    }
    let led = leading.iter().find(|span| span.name == LOOKUP).unwrap();
    assert_eq!(led.text("llm_service.flight.role"), Some("leader"));
    let followed = following.iter().find(|span| span.name == LOOKUP).unwrap();
    assert_eq!(followed.text("llm_service.flight.role"), Some("follower"));
    assert_eq!(one(&following, HANDLER_CALL).text("llm_service.flight.role"), Some("follower"));
    assert_eq!(
        followed.links,
        vec![(leader_trace.clone(), led.span_id.clone())],
        "the follower links to its leader"
    );
    assert!(following.iter().all(|span| span.name != BACKEND), "a follower calls no backend");
}

#[test]
fn a_fleet_follower_on_another_replica_is_traced_as_its_relay() {
    let redis = RedisServer::start();
    let (ollama, receiver) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start());
    ollama.set_reply(Some("one answer for the whole fleet"));
    ollama.set_token_delay(Duration::from_millis(400));
    let store = [("REDIS_URL", redis.url())];
    let store: Vec<(&str, &str)> = store.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let (a, b) = (traced(&ollama, &receiver, &store), traced(&ollama, &receiver, &store));
    // Both replicas reach the store before the race starts: one that has
    // not connected yet leads in process, as it should, and asks twice.
    for replica in [&a, &b] {
        let deadline = Instant::now() + WAIT;
        while Client::new().get(&replica.url("/health")).json()["cache_status"] != "connected" {
            assert!(Instant::now() < deadline, "the replica did not reach the store");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let body = json!({"prompt": "asked of two replicas", "use_cache": true});
    let ((leader_trace, _, leader_parent), (relay_trace, _, relay_parent)) =
        (client_trace(6), client_trace(7));
    std::thread::scope(|scope| {
        let leader = scope.spawn(|| post_traced(&a, "/generate", &body, &leader_parent));
        let deadline = Instant::now() + WAIT;
        while ollama.open_generations() == 0 {
            assert!(Instant::now() < deadline, "the leader's generation did not start");
            std::thread::yield_now();
        }
        assert_eq!(post_traced(&b, "/generate", &body, &relay_parent).status, 200);
        assert_eq!(leader.join().unwrap().status, 200);
    });
    assert_eq!(ollama.generate_requests().len(), 1);
    let role = |trace: &str| {
        let spans = receiver.trace_with(trace, REQUEST, WAIT);
        one(&spans, HANDLER_CALL).text("llm_service.flight.role").map(str::to_string)
    };
    assert_eq!(role(&leader_trace).as_deref(), Some("fleet_leader"));
    assert_eq!(role(&relay_trace).as_deref(), Some("fleet_relay"));
}

#[test]
fn the_handlers_own_decisions_are_events_on_its_span() {
    let (ollama, receiver) = (FakeOllama::start(&["backup:1b"]), OtlpReceiver::start());
    let service = traced(&ollama, &receiver, &[("FALLBACK_MODELS", "backup:1b")]);
    let (trace_id, _, traceparent) = client_trace(9);
    let reply = post_traced(&service, "/generate", &json!({"prompt": "who answers?"}), &traceparent);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spans = receiver.trace_with(&trace_id, REQUEST, WAIT);
    let call = one(&spans, HANDLER_CALL);
    assert_eq!(call.events, ["llm_service.handler.fallback"], "{call:#?}");
    assert_eq!(call.text("gen_ai.request.model"), Some(MODEL));
    assert_eq!(call.text("gen_ai.response.model"), Some("backup:1b"));
    let calls: Vec<_> = spans.iter().filter(|span| span.name == BACKEND).collect();
    assert!(calls.len() >= 2, "the first model's 404, then the fallback's answer: {calls:#?}");
    assert!(calls.iter().any(|call| call.attributes.get("http.response.status_code") == Some(&json!(404))));
}

#[test]
fn a_plugins_call_is_a_span_of_its_own_under_the_generation() {
    let (ollama, receiver) = (FakeOllama::start(&[MODEL]), OtlpReceiver::start());
    let plugins = fresh_directory();
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(PETER, plugins.join("peter.wasm")).unwrap();
    let service = traced(&ollama, &receiver, &[("PLUGINS_DIR", plugins.to_str().unwrap())]);
    let (trace_id, _, traceparent) = client_trace(10);
    let body = json!({"prompt": "How is the sea today?", "character_name": "peter"});
    let reply = post_traced(&service, "/generate", &body, &traceparent);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let spans = receiver.trace_with(&trace_id, REQUEST, WAIT);
    let call = one(&spans, HANDLER_CALL);
    assert_eq!(call.text("llm_service.plugin.name"), Some("peter"));
    let plugin = spans.iter().find(|span| span.name == "llm_service.plugins.call").expect("a plugin span");
    assert_eq!(plugin.parent_span_id, call.span_id);
    assert_eq!(plugin.text("llm_service.plugin.name"), Some("peter"));
    assert_eq!(plugin.text("llm_service.plugin.operation"), Some("transform"));
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_headers_pass_untouched() {
    // The SDK's own default endpoint: if the service fell back to it, this
    // receiver (when the port is free here) would hear from it.
    let default_port = OtlpReceiver::start_on(4318);
    let ollama = FakeOllama::start(&[MODEL]);
    let service =
        Service::builder(BINARY).envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("OLLAMA_MODEL", MODEL)]).start();
    let (_, _, traceparent) = client_trace(8);
    let reply = post_traced(&service, "/generate", &json!({"prompt": "untraced"}), &traceparent);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let generation = ollama.requests().into_iter().find(|request| request.path == "/api/generate").unwrap();
    assert_eq!(generation.traceparent, None, "no span of ours, so no traceparent to the backend");
    let line = service.wait_for_log(WAIT, |line| line["message"] == "LLM Request");
    assert!(line.get("trace_id").is_none(), "{line}");
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    assert!(!metrics.contains("llm_service_trace_spans_total"), "no trace counters when traces are off");
    // A shutdown flushes what is queued: there is nothing.
    service.terminate();
    if let Some(receiver) = default_port {
        assert!(receiver.spans().is_empty(), "spans went to the SDK's default endpoint");
    }
}

#[test]
fn a_dead_receiver_costs_no_request_and_every_dropped_span_is_counted() {
    let ollama = FakeOllama::start(&[MODEL]);
    // A receiver that takes connections and never answers: every export
    // waits out its timeout while the spans pile up behind it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let service = Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("OLLAMA_MODEL", MODEL),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ])
        .start();
    let statuses: BTreeSet<u16> = (0..30)
        .map(|index| service.generate(&json!({"prompt": format!("question {index}")})).status)
        .collect();
    assert_eq!(statuses, BTreeSet::from([200]), "every request answered");
    let counted = |outcome: &str| {
        let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
        let series = format!("llm_service_trace_spans_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0.0, |value| value.parse().unwrap())
    };
    let deadline = Instant::now() + WAIT;
    while counted("dropped_export_failed") == 0.0 {
        assert!(Instant::now() < deadline, "failed exports were not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counted("dropped_queue_full") > 0.0, "30 requests overflow a queue of 8 spans");
    assert_eq!(counted("exported"), 0.0);
    drop(silent);
}
