//! Ollama's and OpenAI's APIs, spoken by their own clients from PyPI
//! (ollama-python and the openai SDK, unmodified: `tests/clients/*.py`),
//! against the fake Ollama and against the real small model behind the
//! OpenAI-compatible protocol, so each dialect crosses each backend
//! protocol; plus what the clients do not show: single-flight across
//! streams, backend call counts, framing and error shapes, metrics.

use std::time::Duration;

use llm_service_test_support::clients;
use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::small_model::SmallModel;
use llm_service_test_support::{Client, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const SMALL_MODEL: &str = "smollm2-135m-instruct";

/// Runs `tests/clients/{script}` against `url`; returns the JSON it printed.
fn run_client(script: &str, url: &str, model: &str, flags: &[&str]) -> Value {
    let mut args = vec![url, model];
    args.extend_from_slice(flags);
    clients::python(script, &args)
}

fn service_over(ollama: &FakeOllama) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).env("OLLAMA_MODEL", MODEL).start()
}

#[test]
fn ollama_python_gets_answers_hits_listings_embeddings_and_its_own_error() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let seen = run_client("ollama_client.py", &service.url(""), MODEL, &["--embed", "--missing-model"]);
    assert_eq!(seen["missing_model"], 404, "{seen}");
    assert_eq!(seen["embeddings"], 2, "{seen}");
    assert_eq!(seen["models"], json!([MODEL]));
    assert_eq!(seen["loaded"], json!([MODEL]), "the fake's /api/ps, passed through");
    // Each generation reached the backend once: the repeats were hits, the
    // streamed chat replayed the whole one, the reordered body matched.
    assert_eq!(ollama.generate_requests().len(), 2, "generate: whole + streamed");
    let chats = ollama.chat_requests();
    assert_eq!(chats.len(), 3, "chat: the first, the canonical pair's first, the missing model: {chats:?}");
    // Nothing the client left out was added.
    assert_eq!(chats[0]["options"], json!({"num_predict": 12, "seed": 7}));
    assert!(chats[1]["messages"][0].get("images").is_none(), "images: [] is absent: {}", chats[1]);
}

#[test]
fn the_openai_sdk_over_an_ollama_backend_gets_answers_hits_and_not_found() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let seen = run_client("openai_client.py", &service.url(""), MODEL, &["--embed", "--missing-model"]);
    assert_eq!(seen["missing_model"], 404, "{seen}");
    assert_eq!(seen["embeddings"], 2);
    assert_eq!(seen["models"], json!([MODEL]));
    let chats = ollama.chat_requests();
    assert_eq!(chats.len(), 3, "whole, streamed, missing model: {chats:?}");
    assert_eq!(ollama.generate_requests().len(), 1, "one completion, then hits");
    // OpenAI's defaults, sent explicitly; max_tokens as num_predict.
    assert_eq!(chats[0]["options"], json!({"num_predict": 12, "seed": 5, "temperature": 1.0, "top_p": 1.0}));
}

#[test]
fn both_clients_stream_real_text_through_an_openai_compatible_backend() {
    let model = SmallModel::start();
    let service = model.gateway(BINARY).start();
    // A model the server does not list is a 404 to each client, though the
    // server itself would answer any name with its one model.
    let ollama_seen = run_client("ollama_client.py", &service.url(""), SMALL_MODEL, &["--missing-model"]);
    assert_eq!(ollama_seen["missing_model"], 404, "{ollama_seen}");
    assert!(!ollama_seen["chat"].as_str().unwrap().trim().is_empty(), "{ollama_seen}");
    assert_eq!(ollama_seen["models"], json!([SMALL_MODEL]), "/v1/models as /api/tags");
    let openai_seen = run_client("openai_client.py", &service.url(""), SMALL_MODEL, &["--missing-model"]);
    assert_eq!(openai_seen["missing_model"], 404, "{openai_seen}");
    assert!(!openai_seen["stream"].as_str().unwrap().trim().is_empty(), "{openai_seen}");
}

#[test]
fn twenty_identical_streamed_chats_make_one_backend_call() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(300));
    ollama.set_token_delay(Duration::from_millis(20));
    let service = service_over(&ollama);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "one two three four five"}]});
    let answers = Client::post_concurrently(20, &service.url("/api/chat"), &body.to_string());
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("content-type"), Some("application/x-ndjson"), "streaming is the default");
        let lines: Vec<Value> = answer.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let text: String = lines.iter().filter_map(|line| line["message"]["content"].as_str()).collect();
        assert_eq!(text, "one two three four five");
        assert_eq!(lines.last().unwrap()["done"], true);
    }
    assert_eq!(ollama.chat_requests().len(), 1, "one backend call for twenty streams");
}

#[test]
fn tool_calls_reach_both_clients_whole_and_streamed() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_tool_call("get_weather", json!({"city": "Paris"}));
    let service = service_over(&ollama);
    let seen = run_client("tools_client.py", &service.url(""), MODEL, &[]);
    assert_eq!(seen, json!({"ollama": "get_weather", "openai": "get_weather", "follow_up": true}));
    let chats = ollama.chat_requests();
    assert!(
        chats.iter().all(|chat| chat["tools"][0]["function"]["name"] == "get_weather"),
        "tools passed on"
    );
    // The follow-up's assistant turn reached Ollama with its call, in Ollama's shape.
    let follow_up = chats.last().unwrap();
    assert_eq!(follow_up["messages"][1]["tool_calls"][0]["function"]["arguments"], json!({"city": "Paris"}));
}

#[test]
fn with_model_management_allowed_pull_copy_and_delete_reach_ollama() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = Service::builder(BINARY)
        .env("OLLAMA_BASE_URL", &ollama.url())
        .env("ALLOW_MODEL_MANAGEMENT", "true")
        .start();
    let seen = run_client("ollama_client.py", &service.url(""), MODEL, &["--manage"]);
    assert_eq!(seen["pulled"], json!(["pulling manifest", "success"]), "{seen}");
    let paths: Vec<(String, String)> =
        ollama.requests().into_iter().map(|request| (request.method, request.path)).collect();
    for expected in [("POST", "/api/pull"), ("POST", "/api/copy"), ("DELETE", "/api/delete")] {
        assert!(paths.contains(&(expected.0.into(), expected.1.into())), "{expected:?} in {paths:?}");
    }
}

#[test]
fn a_thinking_models_thoughts_are_relayed_and_cached_apart_from_its_answer() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_thinking("The user wants two words.");
    let service = service_over(&ollama);
    let ask = |stream: bool| {
        let body = json!({"model": MODEL, "think": true, "stream": stream, "messages": [{"role": "user", "content": "x y"}]});
        Client::new().send("POST", &service.url("/api/chat"), body.to_string().as_bytes())
    };
    let whole = ask(false).json();
    assert_eq!(whole["message"]["content"], "x y", "{whole}");
    assert_eq!(whole["message"]["thinking"], "The user wants two words.");
    // Streamed (a cache hit now): the thoughts come with the last line.
    let streamed = ask(true);
    assert_eq!(streamed.header("x-cache"), Some("HIT"));
    let last: Value = serde_json::from_str(streamed.body.lines().last().unwrap()).unwrap();
    assert_eq!(last["message"]["thinking"], "The user wants two words.", "{}", streamed.body);
    // OpenAI's dialect carries them as llama.cpp does, in reasoning_content.
    let openai = json!({"model": MODEL, "messages": [{"role": "user", "content": "x y z"}]});
    let answer =
        Client::new().send("POST", &service.url("/v1/chat/completions"), openai.to_string().as_bytes());
    assert_eq!(answer.json()["choices"][0]["message"]["reasoning_content"], "The user wants two words.");
}

#[test]
fn a_re_pulled_model_never_serves_the_old_models_answers() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let body = json!({"model": MODEL, "stream": false, "messages": [{"role": "user", "content": "a b"}]});
    let ask = || Client::new().send("POST", &service.url("/api/chat"), body.to_string().as_bytes());
    assert_eq!(ask().header("x-cache"), Some("MISS"));
    assert_eq!(ask().header("x-cache"), Some("HIT"));
    ollama.set_digest("sha256:re-pulled");
    // The listing is reused for a few seconds; then the new digest keys a new answer.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = ask();
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.header("x-cache") == Some("MISS") {
            break;
        }
        assert!(std::time::Instant::now() < until, "the new digest never reached the key");
        std::thread::sleep(Duration::from_millis(50)); // a polling interval
    }
    assert_eq!(ask().header("x-cache"), Some("HIT"));
    assert_eq!(ollama.chat_requests().len(), 2, "one generation per digest");
}

#[test]
fn a_leader_whose_client_leaves_still_generates_for_its_followers() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(100));
    let service = service_over(&ollama);
    let words = "one two three four five six seven eight";
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": words}]});
    let mut leader = NdjsonStream::post(service.addr(), "/api/chat", &body);
    assert!(leader.next_line().is_some(), "the leader's first piece");
    // The follower's first piece comes from the flight: no second backend call.
    let mut follower = NdjsonStream::post(service.addr(), "/api/chat", &body);
    assert!(follower.next_line().is_some(), "the follower's first piece");
    assert_eq!(ollama.chat_requests().len(), 1, "the second request follows the first");
    drop(leader);
    let mut text = String::new();
    let mut lines = 1;
    while let Some((_, line)) = follower.next_line() {
        lines += 1;
        text.push_str(line["message"]["content"].as_str().unwrap_or_default());
        assert!(line.get("error").is_none(), "{line}");
    }
    assert!(lines > 2 && words.ends_with(&text), "the follower got the rest: {text:?}");
    assert_eq!(ollama.chat_requests().len(), 1, "no second generation");
    assert_eq!(ollama.cancelled_streams(), 0, "the backend call was not cancelled");

    // Alone, a client that leaves cancels its generation.
    let mut alone = NdjsonStream::post(
        service.addr(),
        "/api/chat",
        &json!({"model": MODEL, "messages": [{"role": "user", "content": "a b c d e f g h i j"}]}),
    );
    assert!(alone.next_line().is_some());
    drop(alone);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while ollama.cancelled_streams() == 0 {
        assert!(std::time::Instant::now() < until, "the lone generation was never cancelled");
        std::thread::sleep(Duration::from_millis(20)); // a polling interval
    }
}

#[test]
fn each_dialect_frames_its_own_answers_errors_and_refusals() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let client = Client::new();

    let root = client.get(&service.url("/"));
    assert_eq!((root.status, root.body.as_str()), (200, "Ollama is running"));

    // A streamed OpenAI answer is server-sent events ending in [DONE].
    let body = json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "a b c"}]});
    let events = client.send("POST", &service.url("/v1/chat/completions"), body.to_string().as_bytes());
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let data: Vec<&str> = events.body.split("\n\n").filter(|event| !event.is_empty()).collect();
    assert!(data.iter().all(|event| event.starts_with("data: ")), "{}", events.body);
    assert_eq!(data.last(), Some(&"data: [DONE]"));

    // OpenAI's error shape, naming the parameter.
    let bad = json!({"model": MODEL, "temperature": 3, "messages": [{"role": "user", "content": "x"}]});
    let refused = client.send("POST", &service.url("/v1/chat/completions"), bad.to_string().as_bytes());
    assert_eq!(refused.status, 400);
    let error = &refused.json()["error"];
    assert_eq!(
        (error["type"].as_str(), error["param"].as_str()),
        (Some("invalid_request_error"), Some("temperature"))
    );

    // Model management is refused with a reason; nothing reaches the backend.
    let pull = client.send("POST", &service.url("/api/pull"), br#"{"model": "llama3"}"#);
    assert_eq!(pull.status, 403);
    assert!(pull.json()["error"].as_str().unwrap().contains("ALLOW_MODEL_MANAGEMENT=true"), "{}", pull.body);

    // A load (empty prompt) goes to the backend each time, never cached.
    for _ in 0..2 {
        let load = client.send(
            "POST",
            &service.url("/api/generate"),
            json!({"model": MODEL}).to_string().as_bytes(),
        );
        assert_eq!(load.status, 200, "{}", load.body);
    }
    let loads = ollama.generate_requests();
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert!(ollama.requests().iter().all(|request| request.path != "/api/pull"));

    // Each dialect is its own endpoint in the log lines and the metrics.
    let logged = service.wait_for_log(Duration::from_secs(5), |line| {
        line["message"] == "LLM Request" && line["endpoint"] == "/v1/chat/completions"
    });
    assert_eq!(logged["status"], 200, "{logged}");
    let metrics = client.get(&service.url("/metrics/prometheus")).body;
    for endpoint in ["/v1/chat/completions", "/api/generate", "/"] {
        assert!(metrics.contains(&format!("endpoint=\"{endpoint}\"")), "{endpoint} in:\n{metrics}");
    }
}
