//! Anthropic's Messages API and OpenAI's Responses API, spoken by their own
//! clients (the anthropic SDK from PyPI and npm, the openai SDK's
//! `responses`, unmodified: `tests/clients/`), against the fake Ollama and
//! against the real small model behind the OpenAI-compatible protocol; plus
//! what the clients do not show: what reached the backend, single-flight
//! across streams, the event sequences and the error shapes.

use std::time::Duration;

use llm_service_test_support::clients;
use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::small_model::SmallModel;
use llm_service_test_support::{Client, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const SMALL_MODEL: &str = "smollm2-135m-instruct";

fn service_over(ollama: &FakeOllama) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).env("OLLAMA_MODEL", MODEL).start()
}

fn post(service: &Service, path: &str, body: &Value) -> llm_service_test_support::Reply {
    Client::new().send("POST", &service.url(path), body.to_string().as_bytes())
}

/// The `event:` names of a server-sent event stream, in order.
fn event_names(body: &str) -> Vec<String> {
    body.lines().filter_map(|line| line.strip_prefix("event: ")).map(str::to_string).collect()
}

/// The `data:` payloads of a server-sent event stream.
fn event_data(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[test]
fn the_anthropic_sdks_get_answers_hits_streams_counts_and_their_own_errors() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let seen = clients::python("anthropic_client.py", &[&service.url(""), MODEL, "--missing-model"]);
    assert_eq!(seen["missing_max_tokens"], 400, "{seen}");
    assert_eq!(seen["missing_model"], 404, "{seen}");
    assert!(seen["count_tokens"].as_u64().unwrap() > 0, "{seen}");
    let chats = ollama.chat_requests();
    // Whole and streamed misses and the missing model (the backend's 404);
    // their repeats, count_tokens and the missing max_tokens never reached it.
    assert_eq!(chats.len(), 3, "{chats:?}");
    assert_eq!(chats[2]["model"], "no-such-model:1b");
    assert_eq!(chats[0]["messages"][0], json!({"role": "system", "content": "Answer in a few words."}));
    assert_eq!(
        chats[0]["options"],
        json!({"num_predict": 12, "temperature": 1.0}),
        "Anthropic's default, sent"
    );
    assert!(chats.iter().all(|chat| chat.get("metadata").is_none()), "metadata stays here");

    let node_seen = clients::node("anthropic_client.mjs", &[&service.url(""), MODEL, "--missing-model"]);
    assert_eq!(node_seen["missingMaxTokens"], 400, "{node_seen}");
    assert_eq!(node_seen["missingModel"], 404, "{node_seen}");
    // Its whole answer and the missing model; its stream asked what the
    // Python client's did, a hit.
    assert_eq!(ollama.chat_requests().len(), 5, "{:?}", ollama.chat_requests());
}

#[test]
fn the_openai_sdks_responses_get_answers_hits_streams_and_refusals() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let seen = clients::python("responses_client.py", &[&service.url(""), MODEL, "--missing-model"]);
    assert_eq!(seen["previous_response_id"], 400, "{seen}");
    assert_eq!(seen["missing_model"], 404, "{seen}");
    assert_eq!(seen["helper"], "response.completed", "{seen}");
    let chats = ollama.chat_requests();
    assert_eq!(
        chats.len(),
        3,
        "whole and streamed misses, the missing model; the rest hits or refused: {chats:?}"
    );
    assert_eq!(chats[0]["messages"][0], json!({"role": "system", "content": "Answer in a few words."}));
    assert_eq!(chats[0]["options"], json!({"num_predict": 16, "temperature": 1.0, "top_p": 1.0}));
}

#[test]
fn tool_use_round_trips_through_both_sdks() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_tool_call("get_weather", json!({"city": "Paris"}));
    let service = service_over(&ollama);
    for script in ["anthropic_client.py", "responses_client.py"] {
        let seen = clients::python(script, &[&service.url(""), MODEL, "--tools"]);
        assert_eq!(seen["tools"], "get_weather", "{script}: {seen}");
        // The follow-up reached Ollama as its own tool turn: the call with
        // its arguments, the result named after the tool it answers.
        let follow_up = ollama.chat_requests().last().cloned().unwrap();
        assert_eq!(follow_up["tools"][0]["function"]["name"], "get_weather", "{follow_up}");
        let messages = follow_up["messages"].as_array().unwrap();
        let assistant = messages.iter().find(|message| message["role"] == "assistant").unwrap();
        assert_eq!(assistant["tool_calls"][0]["function"]["arguments"], json!({"city": "Paris"}), "{script}");
        let tool = messages.iter().find(|message| message["role"] == "tool").unwrap();
        assert_eq!(tool["tool_name"], "get_weather", "{script}: {follow_up}");
        assert_eq!(tool["content"], "sunny, 21 C", "{script}");
    }
}

#[test]
fn ten_identical_streamed_messages_make_one_backend_call_and_each_gets_every_event() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(300));
    ollama.set_token_delay(Duration::from_millis(20));
    let service = service_over(&ollama);
    let body = json!({"model": MODEL, "max_tokens": 50, "stream": true,
        "messages": [{"role": "user", "content": "one two three four five"}]});
    let answers: Vec<_> = (0..10)
        .map(|_| {
            let (url, body) = (service.url("/v1/messages"), body.to_string());
            std::thread::spawn(move || Client::new().send("POST", &url, body.as_bytes()))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("content-type"), Some("text/event-stream"));
        let names = event_names(&answer.body);
        let deltas = names.iter().filter(|name| *name == "content_block_delta").count();
        let mut expected = vec!["message_start", "ping", "content_block_start"];
        expected.extend(std::iter::repeat_n("content_block_delta", deltas));
        expected.extend(["content_block_stop", "message_delta", "message_stop"]);
        assert_eq!(names, expected, "{}", answer.body);
        let data = event_data(&answer.body);
        let text: String = data.iter().filter_map(|event| event.pointer("/delta/text")?.as_str()).collect();
        assert_eq!(text, "one two three four five");
        assert_eq!(data[data.len() - 2]["delta"]["stop_reason"], "end_turn");
    }
    assert_eq!(ollama.chat_requests().len(), 1, "one backend call for ten streams");
}

#[test]
fn thoughts_become_thinking_blocks_and_reasoning_items() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_thinking("The user wants two words.");
    let service = service_over(&ollama);
    let asked = json!({"model": MODEL, "max_tokens": 64, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "x y"}]});
    let whole = post(&service, "/v1/messages", &asked).json();
    assert_eq!(
        whole["content"][0],
        json!({"type": "thinking", "thinking": "The user wants two words.", "signature": ""})
    );
    assert_eq!(whole["content"][1], json!({"type": "text", "text": "x y"}), "{whole}");
    assert_eq!(ollama.chat_requests()[0]["think"], true, "thinking enabled asks the model to think");
    let mut streamed = asked.clone();
    streamed["stream"] = json!(true);
    let streamed = post(&service, "/v1/messages", &streamed);
    let data = event_data(&streamed.body);
    assert!(
        data.iter().any(|event| event["delta"]
            == json!({"type": "thinking_delta", "thinking": "The user wants two words."})),
        "{}",
        streamed.body
    );
    let responses = json!({"model": MODEL, "input": "x y z", "reasoning": {"effort": "high"}});
    let response = post(&service, "/v1/responses", &responses).json();
    assert_eq!(response["output"][0]["type"], "reasoning", "{response}");
    assert_eq!(response["output"][0]["summary"][0]["text"], "The user wants two words.");
    assert_eq!(response["output"][1]["content"][0]["text"], "x y z");
    assert_eq!(ollama.chat_requests().last().unwrap()["think"], "high", "the effort is passed on");
}

#[test]
fn each_new_dialect_refuses_in_its_own_shape_without_calling_the_backend() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let user = json!([{"role": "user", "content": "hi"}]);
    let anthropic = [
        (
            json!({"model": MODEL, "max_tokens": 8, "messages": user, "tool_choice": {"type": "any"}}),
            "tool_choice",
        ),
        (json!({"model": MODEL, "max_tokens": 8, "messages": []}), "messages"),
        (json!({"model": MODEL, "max_tokens": 8, "messages": user, "temperature": 1.5}), "temperature"),
        (
            json!({"model": MODEL, "max_tokens": 8, "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            "web_search",
        ),
        (
            json!({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}]}),
            "tool_use_id",
        ),
    ];
    for (body, named) in anthropic {
        let answer = post(&service, "/v1/messages", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json();
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(named) || body.to_string().contains(named),
            "{error}"
        );
    }
    let malformed = Client::new().send("POST", &service.url("/v1/messages"), b"{not json");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["error"]["type"], "invalid_request_error");
    let responses = [
        (json!({"model": MODEL, "input": "hi", "store": true}), "store"),
        (json!({"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]}), "tools[0]"),
        (
            json!({"model": MODEL, "input": [{"type": "function_call_output", "call_id": "call_9", "output": "1"}]}),
            "input[0].call_id",
        ),
        (json!({"model": MODEL, "input": ""}), "input"),
        (
            json!({"model": MODEL, "input": "hi", "tool_choice": "required",
            "tools": [{"type": "function", "name": "f"}]}),
            "tool_choice",
        ),
    ];
    for (body, param) in responses {
        let answer = post(&service, "/v1/responses", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let error = answer.json();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    assert!(ollama.chat_requests().is_empty(), "no refused request reached the backend");
    // A named function, in the Responses API's shape, is the one tool offered.
    let named = json!({"model": MODEL, "input": "hi", "tool_choice": {"type": "function", "name": "g"},
        "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}]});
    assert_eq!(post(&service, "/v1/responses", &named).status, 200);
    let offered = &ollama.chat_requests()[0]["tools"];
    assert_eq!(offered.as_array().map(Vec::len), Some(1), "{offered}");
    assert_eq!(offered[0]["function"]["name"], "g");
    // Each counts as its own endpoint.
    let metrics = Client::new().get(&service.url("/metrics/prometheus")).body;
    for endpoint in ["/v1/messages", "/v1/responses"] {
        assert!(metrics.contains(&format!("endpoint=\"{endpoint}\"")), "{endpoint} has its own label");
    }
}

#[test]
fn both_sdks_get_real_text_through_an_openai_compatible_backend() {
    let model = SmallModel::start();
    let service = model.gateway(BINARY).start();
    // A model the server does not list is each SDK's not-found error, though
    // the server itself would answer any name with its one model.
    let seen = clients::python("anthropic_client.py", &[&service.url(""), SMALL_MODEL, "--missing-model"]);
    assert!(!seen["stream"].as_str().unwrap().trim().is_empty(), "{seen}");
    assert_eq!(seen["missing_model"], 404, "{seen}");
    let seen = clients::python("responses_client.py", &[&service.url(""), SMALL_MODEL, "--missing-model"]);
    assert!(!seen["whole"].as_str().unwrap().trim().is_empty(), "{seen}");
    assert_eq!(seen["missing_model"], 404, "{seen}");
    let seen = clients::node("anthropic_client.mjs", &[&service.url(""), SMALL_MODEL, "--missing-model"]);
    assert!(!seen["whole"].as_str().unwrap().trim().is_empty(), "{seen}");
    assert_eq!(seen["missingModel"], 404, "{seen}");
    // llama.cpp has a tokenizer: count_tokens counts with it.
    let body = json!({"model": SMALL_MODEL, "messages": [{"role": "user", "content": "Count these words, please."}]});
    let counted = post(&service, "/v1/messages/count_tokens", &body);
    assert_eq!(counted.status, 200, "{}", counted.body);
    assert_eq!(counted.header("x-token-count"), Some("tokenizer"));
    assert!(counted.json()["input_tokens"].as_u64().unwrap() > 5, "{}", counted.body);
}

#[test]
fn exact_repeats_are_replayed_by_the_edge_tier_with_fresh_ids() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service_over(&ollama);
    let asks = [
        (
            "/v1/messages",
            json!({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "a b"}]}),
        ),
        ("/v1/responses", json!({"model": MODEL, "input": "c d", "stream": true})),
    ];
    for (path, body) in asks {
        let answers: Vec<_> = (0..3).map(|_| post(&service, path, &body)).collect();
        let tiers: Vec<_> = answers
            .iter()
            .map(|answer| answer.header("cache-status").unwrap_or_default().to_string())
            .collect();
        assert!(tiers[0].contains("fwd=miss") && tiers[2].contains("detail=edge"), "{path}: {tiers:?}");
        // The id's unique part, which the answer's other ids share.
        let id = |answer: &llm_service_test_support::Reply| {
            let id = match path {
                "/v1/messages" => answer.json()["id"].as_str().unwrap().to_string(),
                _ => event_data(&answer.body)[0]["response"]["id"].as_str().unwrap().to_string(),
            };
            id.split_once('_').unwrap().1.to_string()
        };
        assert_ne!(id(&answers[1]), id(&answers[2]), "{path}: a replay gets an id of its own");
        let (hit, replay) = (&answers[1].body, &answers[2].body);
        assert_eq!(event_names(hit), event_names(replay), "{path}: the same events");
        let without_id = |body: &str| body.replace(&id(&answers[1]), "ID").replace(&id(&answers[2]), "ID");
        assert_eq!(without_id(hit), without_id(replay), "{path}: the same answer but its id");
    }
    assert_eq!(ollama.chat_requests().len(), 2, "one backend call per question");
}

#[test]
fn claude_code_answers_through_the_gateway_and_its_repeat_is_a_hit() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_reply(Some("Hello from the gateway."));
    let service = service_over(&ollama);
    let home = llm_service_test_support::fresh_directory();
    let (ok, stdout, stderr) = clients::claude_code(&home, &service.url(""), MODEL, "Say hello");
    assert!(ok && stdout.contains("Hello from the gateway."), "stdout: {stdout}\nstderr: {stderr}");
    let chats = ollama.chat_requests();
    assert_eq!(chats.len(), 1, "{chats:?}");
    let chat = &chats[0];
    assert!(chat["tools"].as_array().is_some_and(|tools| tools.len() > 3), "Claude Code's tools passed on");
    assert_eq!(chat["messages"][0]["role"], "system", "its system prompt first");
    assert!(chat.get("think").is_none(), "adaptive thinking is left to the model");
    // A second run in the same directory asks the same (only its session id
    // in `metadata` differs): a hit.
    let (ok, stdout, stderr) = clients::claude_code(&home, &service.url(""), MODEL, "Say hello");
    assert!(ok && stdout.contains("Hello from the gateway."), "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(ollama.chat_requests().len(), 1, "the repeat was answered from the cache");
}

#[test]
fn a_backend_refusal_is_the_clients_mistake_relayed_once_never_retried_or_cached() {
    let ollama = FakeOllama::start(&[MODEL, "backup:1b"]);
    let service = Service::builder(BINARY)
        .env("OLLAMA_BASE_URL", &ollama.url())
        .env("OLLAMA_MODEL", MODEL)
        .env("FALLBACK_MODELS", "backup:1b")
        .start();
    // Each its own question: the same conversation is one cached answer in
    // every dialect.
    let user = |path: &str| json!([{"role": "user", "content": format!("too long for {path}")}]);
    let asks = [
        ("/api/chat", json!({"model": MODEL, "stream": false, "messages": user("/api/chat")})),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": user("/v1/chat/completions")})),
        ("/v1/messages", json!({"model": MODEL, "max_tokens": 8, "messages": user("/v1/messages")})),
        ("/v1/responses", json!({"model": MODEL, "input": "too long for /v1/responses"})),
    ];
    for (path, body) in asks {
        let before = ollama.chat_requests().len();
        ollama.fail_next(1, Fault::Status(400));
        let refused = post(&service, path, &body);
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        let error = refused.json();
        let message = match path {
            "/api/chat" => error["error"].as_str(),
            "/v1/messages" => error["error"]["message"].as_str(),
            _ => error["error"]["message"].as_str(),
        };
        assert!(message.unwrap().contains("fault: status 400"), "{path}: the backend's words: {error}");
        assert_eq!(ollama.chat_requests().len(), before + 1, "{path}: one call, no fallback model tried");
        // Not cached: the same request, the backend well again, is answered.
        let answered = post(&service, path, &body);
        assert_eq!(answered.status, 200, "{path}: {}", answered.body);
    }
}

#[test]
fn a_prompt_over_the_models_context_is_a_bad_request_to_both_sdks() {
    let model = SmallModel::start();
    let service = model.gateway(BINARY).env("MAX_PROMPT_CHARS", "100000").start();
    let seen = clients::python("refusal_client.py", &[&service.url(""), SMALL_MODEL]);
    assert_eq!(seen, json!({"openai": 400, "anthropic": 400}));
    // With their default retries, each SDK asked once.
    let refused: Vec<_> = service
        .logs()
        .into_iter()
        .filter(|line| line["message"] == "LLM Request" && line["error_kind"] == "backend_refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
}
