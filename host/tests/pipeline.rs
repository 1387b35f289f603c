//! The one generation pipeline seen from outside: streamed requests share
//! one flight chunk by chunk, batch items that ask the same share one
//! generation, leader and followers answer a failure alike, and a model
//! switch during a generation never relabels it.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::{Client, Reply, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const FAULTY: &str = env!("LLM_SERVICE_TEST_PROGRAM_PLUGIN_FAULTY");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const OTHER_MODEL: &str = "mistral:7b";
const WORDS: &str = "one two three four five six seven eight nine ten eleven twelve";

fn service(ollama: &FakeOllama, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).envs(extra).start()
}

/// Waits until `ready`, failing after `deadline`.
fn wait_until(deadline: Duration, what: &str, ready: impl Fn() -> bool) {
    let until = Instant::now() + deadline;
    while !ready() {
        assert!(Instant::now() < until, "{what} did not happen within {deadline:?}");
        std::thread::yield_now();
    }
}

/// The text of a stream's pieces, and its last line.
fn pieces_and_last(lines: &[(Instant, Value)]) -> (String, Value) {
    let (last, pieces) = lines.split_last().expect("a stream has lines");
    let text = pieces.iter().map(|(_, line)| line["response"].as_str().unwrap_or_default()).collect();
    (text, last.1.clone())
}

#[test]
fn ten_identical_streams_make_one_backend_call_and_a_late_follower_streams_live() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(40));
    let service = service(&ollama, &[]);
    let body = json!({"prompt": WORDS, "stream": true, "settings": {"max_tokens": 12}});

    let mut leader = NdjsonStream::post(service.addr(), "/generate", &body);
    assert_eq!(leader.status, 200);
    let first = leader.next_line().expect("the leader's first piece");
    // The follower joins a flight that is well under way.
    let second = leader.next_line().expect("the leader's second piece");
    assert!(second.0 >= first.0);
    let late = {
        let (addr, body) = (service.addr(), body.clone());
        std::thread::spawn(move || NdjsonStream::post(addr, "/generate", &body).collect())
    };
    let barrier = Arc::new(Barrier::new(9));
    let others: Vec<_> = (0..8)
        .map(|_| {
            let (addr, body, barrier) = (service.addr(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                NdjsonStream::post(addr, "/generate", &body).collect()
            })
        })
        .collect();
    barrier.wait();
    let mut leader_lines = vec![first, second];
    leader_lines.extend(leader.collect());

    let (leader_text, leader_last) = pieces_and_last(&leader_lines);
    assert_eq!(leader_text, WORDS);
    assert_eq!(leader_last["done"], true);
    assert_eq!(leader_last["response"], WORDS);
    let late = late.join().unwrap();
    let (late_text, late_last) = pieces_and_last(&late);
    assert_eq!(late_text, WORDS, "a late follower gets every piece, the early ones included");
    assert_eq!(late_last["response"], WORDS);
    let leader_last_at = leader_lines.last().unwrap().0;
    assert!(
        late[0].0 < leader_last_at,
        "the follower's first piece came {:?} after the leader's last",
        late[0].0 - leader_last_at
    );
    for other in others {
        let (text, last) = pieces_and_last(&other.join().unwrap());
        assert_eq!((text.as_str(), last["response"].as_str()), (WORDS, Some(WORDS)));
    }
    assert_eq!(ollama.generate_hits(), 1, "ten streams, one backend call");
}

#[test]
fn a_batch_asking_the_same_three_times_makes_one_backend_call() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let item = json!({"prompt": "the same question", "settings": {"temperature": 0.2}});
    let spelled_differently = json!({"settings": {"temperature": 0.20}, "prompt": "the same question"});
    let other = json!({"prompt": "another question"});
    let batch = json!({"requests": [item, other, item, spelled_differently]});
    let reply = Client::new().send("POST", &service.url("/generate/batch"), batch.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4);
    for index in [0, 2, 3] {
        assert_eq!(results[index]["response"], "the same question", "{}", results[index]);
    }
    assert_eq!(results[1]["response"], "another question");
    assert_eq!(ollama.generate_hits(), 2, "one call for the three alike, one for the other");
}

/// Fires `count` identical requests together; their replies.
fn together(service: &Service, body: &Value, count: usize) -> Vec<Reply> {
    let barrier = Arc::new(Barrier::new(count));
    let threads: Vec<_> = (0..count)
        .map(|_| {
            let (url, body, barrier) = (service.url("/generate"), body.to_string(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Client::new().send("POST", &url, body.as_bytes())
            })
        })
        .collect();
    threads.into_iter().map(|thread| thread.join().unwrap()).collect()
}

/// Answers `body` once (cached for a second), breaks the generation with
/// `break_it`, waits until the answer is served stale, then makes the
/// backend slow, fires five together and checks that they made one backend
/// call and all got the first answer, stale.
fn five_after_a_failure_get_the_stale_answer(
    ollama: &FakeOllama,
    service: &Service,
    body: &Value,
    break_it: impl Fn(),
) {
    let first = service.generate(body);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")), "{}", first.body);
    break_it();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = service.generate(body);
        if reply.header("x-cache") == Some("STALE") {
            break;
        }
        assert!(Instant::now() < until, "the answer was never served stale: {} {}", reply.status, reply.body);
        std::thread::sleep(Duration::from_millis(50));
    }
    ollama.set_latency(Duration::from_millis(400));
    let calls_before = ollama.generate_hits();
    let seen: Vec<(u16, String, Value)> = together(service, body, 5)
        .iter()
        .map(|reply| {
            let cache = reply.header("x-cache").unwrap_or("none").to_string();
            (reply.status, cache, reply.json()["response"].clone())
        })
        .collect();
    assert_eq!(ollama.generate_hits() - calls_before, 1, "one flight: {seen:?}");
    for (status, cache, response) in &seen {
        assert_eq!((*status, cache.as_str()), (200, "STALE"), "{seen:?}");
        assert_eq!(response, &body["prompt"], "the last good answer stands in: {seen:?}");
    }
}

#[test]
fn leader_and_followers_answer_a_failed_post_process_alike_with_stale_if_error() {
    let ollama = FakeOllama::start(&[MODEL]);
    let dir = llm_service_test_support::fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(FAULTY, dir.join("faulty.wasm")).unwrap();
    let service = service(&ollama, &[("STALE_IF_ERROR", "600"), ("PLUGINS_DIR", dir.to_str().unwrap())]);
    service.wait_for_log(Duration::from_secs(20), |line| line["message"] == "plugin now serving");
    let body = json!({"prompt": "tell me a story", "character_name": "faulty", "cache_ttl": 1});

    five_after_a_failure_get_the_stale_answer(&ollama, &service, &body, || {
        ollama.set_reply(Some("a story to fail-post"))
    });
}

#[test]
fn leader_and_followers_answer_a_backend_failure_alike_with_stale_if_error() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("STALE_IF_ERROR", "600")]);
    let body = json!({"prompt": "a question worth caching", "cache_ttl": 1});

    five_after_a_failure_get_the_stale_answer(&ollama, &service, &body, || {
        ollama.fail_next(1000, Fault::Status(500))
    });
}

#[test]
fn a_model_switch_during_a_generation_never_relabels_its_answer() {
    let ollama = FakeOllama::start(&[MODEL, OTHER_MODEL]);
    ollama.set_latency(Duration::from_millis(600));
    let service = service(&ollama, &[]);
    let slow = {
        let url = service.url("/generate");
        std::thread::spawn(move || Client::new().send("POST", &url, br#"{"prompt": "which model am I"}"#))
    };
    wait_until(Duration::from_secs(10), "the generation to reach the backend", || {
        ollama.generate_hits() == 1
    });
    let switched = Client::new().send(
        "POST",
        &service.url("/model"),
        json!({"model": OTHER_MODEL}).to_string().as_bytes(),
    );
    assert_eq!(switched.status, 200, "{}", switched.body);
    let reply = slow.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["model"], MODEL, "answered by the model it asked");
    assert_eq!(ollama.generate_requests()[0]["model"], MODEL);
    let log = service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "LLM Request");
    assert_eq!(log["model"], MODEL, "logged under the model that answered");
    let next = service.generate(&json!({"prompt": "which model am I"}));
    assert_eq!(next.json()["model"], OTHER_MODEL, "a new request takes the new model");
}

#[test]
fn a_batch_of_more_large_items_than_backend_slots_does_not_freeze() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("MAX_CONCURRENT_REQUESTS", "10"), ("REQUEST_TIMEOUT", "10")]);
    // 32 distinct 4 KB prompts: each backend request's body is past the
    // 4 KiB a single write carries.
    let items: Vec<Value> = (0..32)
        .map(|index| json!({"prompt": format!("item {index} {}", "word ".repeat(800)), "settings": {"max_tokens": 2}}))
        .collect();
    let started = Instant::now();
    let batch = {
        let (url, body) = (service.url("/generate/batch"), json!({"requests": items}).to_string());
        std::thread::spawn(move || Client::new().send("POST", &url, body.as_bytes()))
    };
    let other = service.generate(&json!({"prompt": "someone else"}));
    assert_eq!(other.status, 200, "{}", other.body);
    let reply = batch.join().unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let results = reply.json()["results"].as_array().unwrap().clone();
    let failed: Vec<&Value> = results.iter().filter(|result| result.get("error").is_some()).collect();
    assert!(
        failed.is_empty(),
        "{} of 32 failed after {:?}: {:?}",
        failed.len(),
        started.elapsed(),
        failed.first()
    );
    assert_eq!(ollama.generate_hits(), 33);
}

#[test]
fn a_stream_cut_by_the_request_deadline_ends_with_an_error_line() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(200));
    let service = service(&ollama, &[("REQUEST_TIMEOUT", "2")]);
    let long = "word ".repeat(40);
    let lines =
        NdjsonStream::post(service.addr(), "/generate", &json!({"prompt": long, "stream": true})).collect();
    let (text, last) = pieces_and_last(&lines);
    assert!(!text.is_empty(), "some pieces came before the deadline");
    assert_eq!(last["done"], true, "{last}");
    assert!(last["error"].as_str().is_some_and(|error| error.contains("in time")), "{last}");
    let logged = service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "LLM Request");
    assert_eq!(logged["error_kind"], "backend_timeout", "counted and logged as cut: {logged}");
}

#[test]
fn a_batch_of_large_answers_fails_only_the_items_that_do_not_fit() {
    let ollama = FakeOllama::start(&[MODEL]);
    // Every answer: nine words of 100 KB, about 0.9 MB.
    let word = "x".repeat(100_000);
    ollama.set_reply(Some(&[word.as_str(); 9].join(" ")));
    let service = service(&ollama, &[]);
    let items: Vec<Value> = (0..32)
        .map(|index| json!({"prompt": format!("large {index}"), "settings": {"max_tokens": 16}}))
        .collect();
    let reply = Client::new().send(
        "POST",
        &service.url("/generate/batch"),
        json!({"requests": items}).to_string().as_bytes(),
    );
    assert_eq!(
        reply.status,
        200,
        "the batch answers, whatever its items' fate: {}",
        &reply.body[..reply.body.len().min(300)]
    );
    let results = reply.json()["results"].as_array().unwrap().clone();
    let fitted = results.iter().take_while(|result| result.get("error").is_none()).count();
    assert!((8..32).contains(&fitted), "the answers that fit 8 MiB came first: {fitted}");
    for (index, result) in results.iter().enumerate().skip(fitted) {
        assert_eq!(result["status"], 400, "item {index}: {}", result["error"]);
        assert_eq!(result["field"], format!("requests[{index}]"));
    }
    let alone = service.generate(&items[31]);
    assert_eq!(
        (alone.status, alone.header("x-cache")),
        (200, Some("HIT")),
        "the answer was cached: asked alone it is a hit"
    );
    assert_eq!(alone.json()["response"].as_str().map(str::len), Some(9 * 100_000 + 8));
}
