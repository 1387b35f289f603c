//! End to end with a real model: SmolLM2-135M-Instruct served by llama.cpp
//! through the OpenAI-compatible backend.

use llm_service_test_support::small_model::SmallModel;
use llm_service_test_support::{Client, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");

fn service(model: &SmallModel) -> Service {
    model.gateway(BINARY).start()
}

#[test]
fn the_openai_backend_generates_real_text() {
    let model = SmallModel::start();
    let service = service(&model);
    let body = json!({"prompt": "Say hello to a friend.", "character_name": "peter", "settings": {"max_tokens": 24, "seed": 1}});
    let reply = Client::new().send("POST", &service.url("/generate"), body.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert!(!answer["response"].as_str().unwrap().trim().is_empty(), "{answer}");
    assert_eq!(answer["model"], "smollm2-135m-instruct");
    let tokens = answer["metadata"]["tokens_generated"].as_u64().unwrap();
    assert!(tokens > 0 && tokens <= 24, "{answer}");
}

#[test]
fn the_openai_backend_streams_real_text() {
    let model = SmallModel::start();
    let service = service(&model);
    let body =
        json!({"prompt": "Name three colours.", "stream": true, "settings": {"max_tokens": 24, "seed": 1}});
    let reply = Client::new().send("POST", &service.url("/generate"), body.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let lines: Vec<Value> = reply.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let (last, chunks) = lines.split_last().expect("at least the final line");
    assert!(!chunks.is_empty(), "text arrived in pieces: {}", reply.body);
    assert!(chunks.iter().all(|chunk| chunk["done"] == false));
    assert_eq!(last["done"], true, "{last}");
    let streamed: String = chunks.iter().map(|chunk| chunk["response"].as_str().unwrap()).collect();
    assert!(!streamed.trim().is_empty());
    assert_eq!(last["response"].as_str().unwrap(), streamed, "the final line carries the whole answer");
    assert!(last["metadata"]["tokens_generated"].as_u64().unwrap() > 0, "{last}");
}
