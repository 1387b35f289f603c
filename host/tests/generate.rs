//! POST /generate and /generate/batch against the fake Ollama.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::{Client, Reply, Service};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const PROMPT: &str = "You are Peter Griffin. Say hello in character.";

fn service(ollama: &FakeOllama, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).envs(extra).start()
}

fn generate(service: &Service, body: &Value) -> Reply {
    service.generate(body)
}

/// The fake's answer for `prompt` limited to `tokens` words.
fn expected_text(prompt: &str, tokens: usize) -> String {
    prompt.split_whitespace().take(tokens).collect::<Vec<_>>().join(" ")
}

#[test]
fn defaults_and_overrides_arrive_as_ollama_options_and_the_answer_has_the_seed_shape() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let reply = generate(
        &service,
        &json!({"prompt": PROMPT, "character_name": "peter", "settings": {"temperature": 0.3, "top_k": 5, "seed": 7},
                "conversation_id": "channel_123456", "use_cache": true}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = &ollama.generate_requests()[0];
    assert_eq!(sent["model"], MODEL);
    assert_eq!(sent["prompt"], PROMPT);
    assert_eq!(sent["stream"], false);
    assert_eq!(
        sent["options"],
        json!({"temperature": 0.3, "num_predict": 500, "top_p": 0.9, "top_k": 5, "repeat_penalty": 1.1,
               "stop": ["Human:", "Assistant:", "\n\n\n"], "seed": 7})
    );

    let answer = reply.json();
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{answer}");
    assert_eq!(answer["response"], expected_text(PROMPT, 500));
    assert_eq!(answer["model"], MODEL);
    assert!(answer["generation_time"].as_f64().unwrap() >= 0.0);
    assert_eq!(answer["cache_hit"], false);
    assert_eq!(answer["metadata"]["temperature"], 0.3);
    assert_eq!(answer["metadata"]["tokens_generated"], PROMPT.split_whitespace().count());
    assert_eq!(answer["metadata"]["prompt_hash"], hex::encode(Sha256::digest(PROMPT)));
}

#[test]
fn operator_defaults_reach_the_backend_and_a_request_model_overrides_ollama_model() {
    let ollama = FakeOllama::start(&[MODEL, "other:1b"]);
    let service = service(
        &ollama,
        &[("DEFAULT_MAX_TOKENS", "3"), ("DEFAULT_TEMPERATURE", "0.1"), ("DEFAULT_STOP", "[\"END\"]")],
    );
    let reply = generate(&service, &json!({"prompt": PROMPT, "model": "other:1b"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = &ollama.generate_requests()[0];
    assert_eq!(sent["model"], "other:1b");
    assert_eq!(sent["options"]["num_predict"], 3);
    assert_eq!(sent["options"]["temperature"], 0.1);
    assert_eq!(sent["options"]["stop"], json!(["END"]));
    let answer = reply.json();
    assert_eq!(answer["model"], "other:1b");
    assert_eq!(answer["response"], expected_text(PROMPT, 3));
    assert_eq!(answer["metadata"]["tokens_generated"], 3);
}

#[test]
fn every_validation_error_is_400_naming_its_field() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("MAX_PROMPT_CHARS", "50")]);
    let cases = [
        (json!({}), "prompt"),
        (json!({"prompt": "  "}), "prompt"),
        (json!({"prompt": 5}), "prompt"),
        (json!({"prompt": "x".repeat(51)}), "prompt"),
        (json!({"prompt": "hi", "settings": {"temperature": 2.5}}), "settings.temperature"),
        (json!({"prompt": "hi", "settings": {"temperature": -0.1}}), "settings.temperature"),
        (json!({"prompt": "hi", "settings": {"top_p": 0}}), "settings.top_p"),
        (json!({"prompt": "hi", "settings": {"top_p": 1.5}}), "settings.top_p"),
        (json!({"prompt": "hi", "settings": {"max_tokens": 0}}), "settings.max_tokens"),
        (json!({"prompt": "hi", "settings": {"max_tokens": 8193}}), "settings.max_tokens"),
        (json!({"prompt": "hi", "settings": {"max_tokens": "10"}}), "settings.max_tokens"),
        (json!({"prompt": "hi", "settings": {"temprature": 1}}), "settings.temprature"),
        (json!({"prompt": "hi", "settings": {"stop": "Human:"}}), "settings.stop"),
        (json!({"prompt": "hi", "settings": []}), "settings"),
        (json!({"prompt": "hi", "use_cache": "yes"}), "use_cache"),
        (json!({"prompt": "hi", "character_name": 3}), "character_name"),
        (json!({"prompt": "hi", "character_name": "n".repeat(129)}), "character_name"),
        (json!({"prompt": "hi", "conversation_id": "c".repeat(257)}), "conversation_id"),
        (json!({"prompt": "hi", "model": "m".repeat(257)}), "model"),
        (json!({"prompt": "hi", "settings": {"seed": 18446744073709551615u64}}), "settings.seed"),
        (json!(["prompt"]), "body"),
    ];
    for (body, field) in cases {
        let reply = generate(&service, &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let error = reply.json();
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(error["error"].as_str().unwrap().contains(field.rsplit('.').next().unwrap()), "{error}");
    }
    assert_eq!(ollama.generate_hits(), 0, "invalid requests never reach the backend");
}

#[test]
fn malformed_json_is_400_saying_where() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let reply =
        Client::new().send("POST", &service.url("/generate"), b"{\"prompt\": \"hi\",\n  \"settings\": {,}}");
    assert_eq!(reply.status, 400, "{}", reply.body);
    let error = reply.json();
    assert_eq!(error["line"], 2, "{error}");
    assert!(error["column"].as_u64().unwrap() > 0);
    assert!(error["error"].as_str().unwrap().starts_with("malformed JSON at line 2"), "{error}");
}

#[test]
fn an_unknown_model_is_404_naming_it() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let reply = generate(&service, &json!({"prompt": "hi", "model": "nope:1b"}));
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["error"], "model 'nope:1b' not found");
}

#[test]
fn fallback_models_are_tried_in_order_and_the_answer_names_the_one_that_answered() {
    let ollama = FakeOllama::start(&["backup:1b"]);
    let service = service(&ollama, &[("FALLBACK_MODELS", "gone:1b, backup:1b")]);
    let reply = generate(&service, &json!({"prompt": "hello there"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["model"], "backup:1b");
    let models: Vec<Value> = ollama.generate_requests().iter().map(|r| r["model"].clone()).collect();
    assert_eq!(models, [json!(MODEL), json!("gone:1b"), json!("backup:1b")]);
}

#[test]
fn failing_twice_then_succeeding_is_200_after_exactly_three_backend_requests() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.fail_next(1, Fault::Status(503));
    ollama.fail_next(1, Fault::Drop);
    let service = service(&ollama, &[]);
    let reply = generate(&service, &json!({"prompt": "hello there"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(ollama.generate_hits(), 3);
    let retries = service.logs().iter().filter(|line| line["message"] == "retrying backend request").count();
    assert_eq!(retries, 2, "each retry is logged");
}

#[test]
fn other_backend_errors_are_not_retried() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.fail_next(1, Fault::Status(500));
    let service = service(&ollama, &[]);
    let reply = generate(&service, &json!({"prompt": "hello there"}));
    assert_eq!(reply.status, 502, "{}", reply.body);
    assert!(reply.json()["error"].as_str().unwrap().contains("fault: status 500"));
    assert_eq!(ollama.generate_hits(), 1);
}

#[test]
fn a_backend_that_is_down_is_503_with_retry_after() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let service =
        Service::builder(BINARY).env("OLLAMA_BASE_URL", &format!("http://127.0.0.1:{closed_port}")).start();
    let reply =
        Client::new().send("POST", &service.url("/generate"), json!({"prompt": "hi"}).to_string().as_bytes());
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert_eq!(
        reply.json()["error"],
        format!("the model backend is unavailable: http://127.0.0.1:{closed_port} refused the connection"),
        "names the backend, in words"
    );
    let retries = service.logs().iter().filter(|line| line["message"] == "retrying backend request").count();
    assert_eq!(retries, 3, "OLLAMA_RETRY_ATTEMPTS retries before giving up");
}

#[test]
fn a_hanging_backend_is_504_within_request_timeout() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.fail_next(1, Fault::Hang);
    let service = service(&ollama, &[("REQUEST_TIMEOUT", "2")]);
    let reply = generate(&service, &json!({"prompt": "hello there"}));
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.json()["error"], "the model backend did not answer in time");
}

#[test]
fn max_concurrent_requests_bounds_open_backend_requests_while_health_stays_served() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(600));
    let service = service(&ollama, &[("MAX_CONCURRENT_REQUESTS", "2")]);
    let client = Client::new();
    let workers: Vec<_> = (0..6)
        .map(|index| {
            let (client, url) = (client.clone(), service.url("/generate"));
            std::thread::spawn(move || {
                client.send(
                    "POST",
                    &url,
                    json!({"prompt": format!("prompt number {index}")}).to_string().as_bytes(),
                )
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(20);
    while ollama.open_generations() == 0 {
        assert!(Instant::now() < until, "no generation started");
    }
    assert_eq!(client.get(&service.url("/health")).status, 200);
    assert!(ollama.open_generations() > 0, "/health answered while generations were open");
    for worker in workers {
        assert_eq!(worker.join().unwrap().status, 200);
    }
    assert_eq!(ollama.generate_hits(), 6);
    assert_eq!(ollama.max_concurrent_generations(), 2);
}

#[test]
fn a_full_generation_queue_is_503_with_retry_after() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_secs(3));
    let service = service(&ollama, &[("MAX_CONCURRENT_REQUESTS", "1"), ("MAX_QUEUED_GENERATIONS", "1")]);
    let client = Client::new();
    let workers: Vec<_> = (0..3)
        .map(|index| {
            let (client, url) = (client.clone(), service.url("/generate"));
            std::thread::spawn(move || {
                client.send("POST", &url, json!({"prompt": format!("p {index}")}).to_string().as_bytes())
            })
        })
        .collect();
    let replies: Vec<Reply> = workers.into_iter().map(|worker| worker.join().unwrap()).collect();
    let mut statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503], "one slot, one queue place");
    let rejected = replies.iter().find(|reply| reply.status == 503).unwrap();
    assert_eq!(rejected.header("retry-after"), Some("1"));
}

#[test]
fn streaming_sends_a_line_per_token_and_a_final_line_with_the_whole_answer() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let reply = generate(&service, &json!({"prompt": PROMPT, "stream": true, "settings": {"max_tokens": 4}}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = reply.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 5, "{}", reply.body);
    let tokens: String = lines[..4].iter().map(|line| line["response"].as_str().unwrap()).collect();
    assert_eq!(tokens, expected_text(PROMPT, 4));
    assert!(lines[..4].iter().all(|line| line["done"] == false));
    let last = &lines[4];
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], expected_text(PROMPT, 4));
    assert_eq!(last["model"], MODEL);
    assert_eq!(last["metadata"]["tokens_generated"], 4);
    assert_eq!(ollama.generate_requests()[0]["stream"], true);
}

#[test]
fn a_client_that_disconnects_mid_stream_cancels_the_backend_request() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(100));
    let service = service(&ollama, &[]);
    let body =
        json!({"prompt": "one two three four five six seven eight nine ten eleven twelve", "stream": true});
    let mut stream = std::net::TcpStream::connect(service.addr()).unwrap();
    let request = format!(
        "POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.to_string().len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while !line.contains("\"done\":false") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended before a token arrived");
    }
    drop(reader);
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while ollama.cancelled_streams() == 0 {
        assert!(Instant::now() < until, "the backend stream was never cancelled");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ollama.open_generations(), 0);
}

#[test]
fn a_batch_answers_in_order_and_a_bad_item_fails_alone() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let batch = json!({"requests": [
        {"prompt": "first request here"},
        {"prompt": "bad", "settings": {"temperature": 9}},
        {"prompt": "third one", "settings": {"max_tokens": 1}},
    ]});
    let reply = Client::new().send("POST", &service.url("/generate/batch"), batch.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["response"], "first request here");
    assert_eq!(results[1]["status"], 400);
    assert_eq!(results[1]["field"], "requests[1].settings.temperature");
    assert_eq!(results[2]["response"], "third");
    assert_eq!(ollama.generate_hits(), 2);
}

#[test]
fn a_component_cannot_reach_anything_but_the_backend() {
    let ollama = FakeOllama::start(&[MODEL]);
    let elsewhere = FakeOllama::start(&[MODEL]);
    let misbehave = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");
    let service = Service::builder(BINARY).component(misbehave).env("OLLAMA_BASE_URL", &ollama.url()).start();
    let client = Client::new();
    let reply = client.get(&service.url(&format!("/fetch?url={}/api/version", elsewhere.url())));
    assert_eq!(reply.body, "refused: Denied");
    let reply = client.get(&service.url(&format!("/fetch?url={}/api/tags", ollama.url())));
    assert_eq!(reply.body, "fetched: status 200");
    assert!(elsewhere.requests().is_empty());
    assert_eq!(ollama.requests().iter().filter(|request| request.path == "/api/tags").count(), 1);
}
