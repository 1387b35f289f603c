//! A handler written against the first `llm-service:host@0.1.0` contract:
//! it caches with `get`/`set`/`delete`, shares work with `join` and a
//! `flight`, and runs plugins with `plugins.transform`, the calls the
//! built-in handler replaced with `lookup`/`land` and `serving`. The tests
//! run it to show that a handler an operator built then still works.
//!
//! - `POST /set?key=K&ttl=S` (body: the value), `GET /get?key=K`,
//!   `POST /delete?key=K`
//! - `POST /flight?key=K&hold_ms=N` (body: the value): leads (setting
//!   `K:led`) and lands the body after N ms, or follows and answers what the
//!   leader landed
//! - `GET /transform?character=C`: the plugin serving C, by `transform`

use llm_service_sdk::Handler;
use llm_service_sdk::bindings::llm_service::host::cache::{self, JoinResult, Outcome};
use llm_service_sdk::bindings::llm_service::host::{plugins, prompt_types};
use llm_service_sdk::http::{Reply, Request, Response};
use serde_json::json;

struct FirstProtocol;

impl Handler for FirstProtocol {
    fn handle(request: Request) -> Reply {
        let key = request.query_param("key").unwrap_or("first-protocol:none").to_string();
        let number = |name: &str| request.query_param(name).and_then(|value| value.parse::<u64>().ok());
        let body = request.body().to_vec();
        let answer = match request.path() {
            "/set" => match cache::set(&key, &body, number("ttl").unwrap_or(60)) {
                Ok(()) => json!({"set": key}),
                Err(error) => json!({"error": format!("{error:?}")}),
            },
            "/get" => match cache::get(&key) {
                Ok(Some(entry)) => {
                    json!({"value": String::from_utf8_lossy(&entry.value), "ttl_left_s": entry.ttl_left_s})
                }
                Ok(None) => return Response::error(404, "not cached").into(),
                Err(error) => json!({"error": format!("{error:?}")}),
            },
            "/delete" => json!({"deleted": cache::delete(&key).unwrap_or(false)}),
            "/flight" => match cache::join(&key, 5_000) {
                JoinResult::Lead(flight) => {
                    // Tells a test the flight is led, so its follower is sure to follow.
                    let _ = cache::set(&format!("{key}:led"), b"yes", 60);
                    std::thread::sleep(std::time::Duration::from_millis(number("hold_ms").unwrap_or(0)));
                    flight.land(&body);
                    json!({"led": true})
                }
                JoinResult::Followed(Outcome::Landed(value)) => {
                    json!({"followed": String::from_utf8_lossy(&value)})
                }
                JoinResult::Followed(Outcome::Crashed(error)) => {
                    json!({"crashed": String::from_utf8_lossy(&error)})
                }
                JoinResult::Followed(Outcome::Abandoned) => json!({"abandoned": true}),
            },
            "/transform" => {
                let request = prompt_types::PromptRequest {
                    character: request.query_param("character").unwrap_or_default().to_string(),
                    conversation_id: None,
                    generation: prompt_types::Generation {
                        system: None,
                        prompt: "hello".into(),
                        settings: prompt_types::Settings {
                            temperature: 0.8,
                            max_tokens: 10,
                            top_p: 0.9,
                            top_k: 40,
                            repeat_penalty: 1.1,
                            stop: Vec::new(),
                            seed: None,
                        },
                    },
                };
                match plugins::transform(&request) {
                    Ok(Some((applied, generation))) => {
                        json!({"plugin": applied.name(), "system": generation.system})
                    }
                    Ok(None) => json!({"plugin": null}),
                    Err(failure) => json!({"error": failure.plugin}),
                }
            }
            "/health" => json!({"status": "healthy"}),
            other => return Response::error(404, &format!("no such endpoint: {other}")).into(),
        };
        Response::json(200, &answer).into()
    }
}

llm_service_sdk::export_handler!(FirstProtocol);
