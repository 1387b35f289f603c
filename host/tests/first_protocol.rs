//! A handler built against the first 0.1 contract (cache `get`/`set`/
//! `delete`/`join` and `plugins.transform`, which the built-in handler no
//! longer calls) still runs on this host: the contract only grew.

use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Service, fresh_directory};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const FIRST_PROTOCOL: &str = env!("LLM_SERVICE_TEST_PROGRAM_FIRST_PROTOCOL");
const PETER: &str = env!("LLM_SERVICE_PLUGIN_PETER");

fn service(extra: &[(&str, &str)]) -> (Service, FakeOllama) {
    let ollama = FakeOllama::start(&["m"]);
    let service = Service::builder(BINARY)
        .component(FIRST_PROTOCOL)
        .env("OLLAMA_BASE_URL", &ollama.url())
        .envs(extra)
        .start();
    (service, ollama)
}

#[test]
fn get_set_and_delete_still_work() {
    let (service, _ollama) = service(&[]);
    let client = Client::new();
    let set = client.send("POST", &service.url("/set?key=first:k&ttl=60"), b"stored value");
    assert_eq!((set.status, set.json()["set"].as_str()), (200, Some("first:k")), "{}", set.body);
    let got = client.get(&service.url("/get?key=first:k"));
    assert_eq!(got.json()["value"], "stored value", "{}", got.body);
    let ttl_left = got.json()["ttl_left_s"].as_u64().unwrap();
    assert!((58..=60).contains(&ttl_left), "{ttl_left}");
    let deleted = client.send("POST", &service.url("/delete?key=first:k"), b"");
    assert_eq!(deleted.json()["deleted"], true);
    assert_eq!(client.get(&service.url("/get?key=first:k")).status, 404);
}

#[test]
fn join_still_shares_one_flight() {
    let (service, _ollama) = service(&[]);
    let leader = {
        let url = service.url("/flight?key=first:f&hold_ms=800");
        std::thread::spawn(move || Client::new().send("POST", &url, b"the leader's value"))
    };
    let client = Client::new();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(&service.url("/get?key=first:f:led")).status != 200 {
        assert!(std::time::Instant::now() < until, "the leader never led");
        std::thread::sleep(Duration::from_millis(10));
    }
    let follower = client.send("POST", &service.url("/flight?key=first:f&hold_ms=0"), b"mine");
    assert_eq!(follower.json()["followed"], "the leader's value");
    assert_eq!(leader.join().unwrap().json()["led"], true);
}

#[test]
fn transform_still_runs_the_characters_plugin() {
    let dir = fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(PETER, dir.join("peter.wasm")).unwrap();
    let (service, _ollama) = service(&[("PLUGINS_DIR", dir.to_str().unwrap())]);
    service.wait_for_log(Duration::from_secs(20), |line| line["message"] == "plugin now serving");
    let client = Client::new();
    let peter = client.get(&service.url("/transform?character=peter")).json();
    assert_eq!(peter["plugin"], "peter");
    assert!(peter["system"].as_str().is_some_and(|system| !system.is_empty()), "{peter}");
    assert_eq!(client.get(&service.url("/transform?character=lois")).json(), json!({"plugin": null}));
}
