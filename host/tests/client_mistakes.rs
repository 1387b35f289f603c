//! What happens when something is wrong, as the official clients see it
//! (ollama-python, ollama-js, the openai SDK, unmodified:
//! `tests/clients/`): the client's own error type and status, how many
//! backend calls a mistake cost (none where the gateway refuses it itself),
//! and that nothing wrong is cached or silently dropped.

use llm_service_test_support::clients;
use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::small_model::{SMALL_MODEL_NAME, SmallModel};
use llm_service_test_support::{Client, Reply, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";

fn service_over(ollama: &FakeOllama) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).env("OLLAMA_MODEL", MODEL).start()
}

fn post(service: &Service, path: &str, body: &Value) -> Reply {
    Client::new().send("POST", &service.url(path), body.to_string().as_bytes())
}

#[test]
fn the_clients_get_their_own_errors_and_what_they_asked_for() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let seen = clients::python("mistakes_client.py", &[&service.url(""), MODEL]);
    assert_eq!(seen["hot"], 400, "{seen}");
    assert_eq!(seen["many"], 400, "{seen}");
    assert_eq!(seen["wizard"], 400, "{seen}");
    assert_eq!(seen["required"], 400, "an Ollama backend cannot force a call: {seen}");
    assert_eq!(seen["eval_duration"], 3_000_000, "the fake's own eval_duration, on the hit too: {seen}");
    let chats = ollama.chat_requests();
    // The chat (its repeat a hit), the named tool, no tools (the stream
    // asked the same: a hit), the effort.
    assert_eq!(chats.len(), 4, "no refused request reached the backend: {chats:?}");
    let tools = |chat: &Value| -> Vec<String> {
        let tools = chat["tools"].as_array().cloned().unwrap_or_default();
        tools.iter().map(|tool| tool["function"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(tools(&chats[1]), ["get_time"], "a named function is the one tool offered");
    assert!(tools(&chats[2]).is_empty(), "tool_choice none offers none");
    assert_eq!(chats[3]["think"], "high", "reasoning_effort is passed on as the think level");
    assert!(ollama.generate_requests().is_empty());
}

#[test]
fn dropped_fields_are_passed_on_and_keyed_or_refused_by_name() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    // Ollama's logprobs: a cached answer holds none, so it is refused.
    let logprobs = post(
        &service,
        "/api/chat",
        &json!({"model": MODEL, "stream": false, "logprobs": true, "messages": [{"role": "user", "content": "a"}]}),
    );
    assert_eq!(logprobs.status, 400, "{}", logprobs.body);
    assert_eq!(logprobs.json()["field"], "logprobs");
    // reasoning_effort is in the key: another effort is another answer.
    let ask = |effort: Option<&str>| {
        let mut body = json!({"model": MODEL, "messages": [{"role": "user", "content": "b"}]});
        if let Some(effort) = effort {
            body["reasoning_effort"] = json!(effort);
        }
        post(&service, "/v1/chat/completions", &body)
    };
    for (effort, cache) in
        [(None, "MISS"), (Some("low"), "MISS"), (Some("low"), "HIT"), (Some("high"), "MISS")]
    {
        assert_eq!(ask(effort).header("x-cache"), Some(cache), "{effort:?}");
    }
    // dimensions reach the backend's embeddings.
    let embedded = post(&service, "/v1/embeddings", &json!({"model": MODEL, "input": "c", "dimensions": 8}));
    assert_eq!(embedded.status, 200, "{}", embedded.body);
    let embed = ollama.requests().into_iter().find(|request| request.path == "/api/embed").unwrap();
    assert_eq!(embed.body["dimensions"], 8, "{:?}", embed.body);
    // usage: null on every chunk before the usage chunk, as OpenAI sends.
    let streamed = post(
        &service,
        "/v1/chat/completions",
        &json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "d e"}]}),
    );
    let chunks: Vec<Value> = streamed
        .body
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    let (last, before) = chunks.split_last().unwrap();
    assert!(last["usage"]["total_tokens"].as_u64().is_some(), "{last}");
    assert!(before.iter().all(|chunk| chunk.get("usage") == Some(&Value::Null)), "{}", streamed.body);
}

#[test]
fn over_an_openai_compatible_backend_nothing_is_dropped_in_silence() {
    let model = SmallModel::start();
    let service = model.gateway(BINARY).start();
    // Images on /api/generate reach the server (which has no eyes: it says so).
    let image =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let described = post(
        &service,
        "/api/generate",
        &json!({"model": SMALL_MODEL_NAME, "prompt": "What is in this picture?", "images": [image], "stream": false}),
    );
    assert_ne!(described.status, 200, "an image the model never saw is not described: {}", described.body);
    assert!(described.json()["error"].as_str().unwrap().contains("image"), "{}", described.body);
    // An embedding the server cannot make: Ollama's error, a string, to ollama-js.
    let seen = clients::node("ollama_errors.mjs", &[&service.url(""), SMALL_MODEL_NAME]);
    assert!(seen["message"].as_str().unwrap().contains("embeddings"), "{seen}");
    let embed = post(&service, "/api/embed", &json!({"model": SMALL_MODEL_NAME, "input": "x"}));
    assert!(embed.json()["error"].is_string(), "{}", embed.body);
    // Listings say what the server tells.
    let tags = Client::new().get(&service.url("/api/tags")).json();
    let listed = &tags["models"][0];
    assert!(listed["size"].as_u64().unwrap() > 1_000_000, "{listed}");
    assert_eq!(listed["details"]["parameter_size"], "134.5M", "{listed}");
    assert!(!listed["details"]["quantization_level"].as_str().unwrap().is_empty(), "{listed}");
    assert!(!listed["modified_at"].as_str().unwrap().starts_with("1970"), "{listed}");
    let ps = Client::new().get(&service.url("/api/ps")).json();
    assert_eq!(ps["models"][0]["name"], SMALL_MODEL_NAME, "its one model is loaded: {ps}");
}

#[test]
fn numbers_differing_past_the_sixth_decimal_and_bad_types_are_not_one_answer() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let chat = |temperature: f64| {
        let body = json!({"model": MODEL, "stream": false, "options": {"temperature": temperature},
            "messages": [{"role": "user", "content": "seven decimals"}]});
        post(&service, "/api/chat", &body).header("x-cache").map(str::to_string)
    };
    assert_eq!(chat(0.1234561).as_deref(), Some("MISS"));
    assert_eq!(chat(0.1234564).as_deref(), Some("MISS"), "another number, another answer");
    assert_eq!(chat(0.1234561).as_deref(), Some("HIT"));
    let generate = |temperature: f64| {
        let body = json!({"prompt": "seven decimals", "settings": {"temperature": temperature}});
        post(&service, "/generate", &body).json()["cache_hit"].clone()
    };
    assert_eq!(
        (generate(0.1234561), generate(0.1234564)),
        (json!(false), json!(false)),
        "the seed's key too"
    );
    // Types the OpenAI dialect used to wave through, and an unbounded model name.
    let user = json!([{"role": "user", "content": "x"}]);
    for (body, field) in [
        (json!({"model": MODEL, "messages": user, "stream": "yes"}), "stream"),
        (json!({"model": MODEL, "messages": user, "tools": "x"}), "tools"),
        (json!({"model": "m".repeat(300), "messages": user}), "model"),
    ] {
        let refused = post(&service, "/v1/chat/completions", &body);
        assert_eq!(refused.status, 400, "{field}: {}", refused.body);
        assert_eq!(refused.json()["error"]["param"], field);
    }
}
