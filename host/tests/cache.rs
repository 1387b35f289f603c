//! The response cache against a real redis-server (the KeyDB stand-in) and
//! the fake Ollama.

use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Reply, Service};
use serde_json::{Value, json};
use sha2::Digest;

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";

fn service(ollama: &FakeOllama, redis: Option<&RedisServer>, extra: &[(&str, &str)]) -> Service {
    let mut builder = Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).envs(extra);
    if let Some(redis) = redis {
        builder = builder.env("REDIS_URL", &redis.url());
    }
    builder.start()
}

fn generate(service: &Service, body: &Value) -> Reply {
    service.generate(body)
}

fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("none")
}

/// Repeats `attempt` until it returns true, failing after `deadline`.
fn eventually(deadline: Duration, what: &str, mut attempt: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !attempt() {
        assert!(Instant::now() < until, "{what} did not happen within {deadline:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_miss_then_a_hit_costs_one_backend_call_and_the_key_follows_the_seed() {
    let ollama = FakeOllama::start(&[MODEL]);
    let redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[]);
    let body = json!({"prompt": "Say hello in character.", "character_name": "peter"});

    let first = generate(&service, &body);
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"), "{}", first.body);
    assert_eq!(first.json()["cache_hit"], false);
    let second = generate(&service, &body);
    assert_eq!((second.status, x_cache(&second)), (200, "HIT"), "{}", second.body);
    assert_eq!(second.json()["cache_hit"], true);
    assert_eq!(second.json()["response"], first.json()["response"]);
    assert!(second.header("age").is_some_and(|age| age.parse::<u64>().is_ok()));
    assert_eq!(ollama.generate_hits(), 1, "the second identical request must hit the cache");

    let keys = redis.command("KEYS llm_response:*");
    let prompt_hash = first.json()["metadata"]["prompt_hash"].as_str().unwrap().to_string();
    assert!(keys.contains(&format!("llm_response:{prompt_hash}:peter:")), "{keys}");
    assert_eq!(redis.answer_count(), 1);
    let health = Client::new().get(&service.url("/health")).json();
    assert_eq!(health["cache_status"], "connected");
}

#[test]
fn key_order_and_spelled_out_defaults_share_a_key_while_model_or_option_changes_do_not() {
    let ollama = FakeOllama::start(&[MODEL, "other:1b"]);
    let service = service(&ollama, None, &[]);
    let plain = json!({"prompt": "hello there friend", "character_name": "lois"});
    let reordered = json!({"settings": {"top_k": 40, "temperature": 0.8}, "character_name": "lois", "prompt": "hello there friend"});
    assert_eq!(x_cache(&generate(&service, &plain)), "MISS");
    assert_eq!(x_cache(&generate(&service, &reordered)), "HIT");
    assert_eq!(
        x_cache(&generate(
            &service,
            &json!({"prompt": "hello there friend", "character_name": "lois", "model": "other:1b"})
        )),
        "MISS"
    );
    assert_eq!(
        x_cache(&generate(
            &service,
            &json!({"prompt": "hello there friend", "character_name": "lois", "settings": {"top_p": 0.5}})
        )),
        "MISS"
    );
    assert_eq!(ollama.generate_hits(), 3);
}

#[test]
fn use_cache_false_neither_reads_nor_writes() {
    let ollama = FakeOllama::start(&[MODEL]);
    let redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[]);
    let body = json!({"prompt": "no caching please", "use_cache": false});
    assert_eq!(x_cache(&generate(&service, &body)), "BYPASS");
    assert_eq!(x_cache(&generate(&service, &body)), "BYPASS");
    assert_eq!(ollama.generate_hits(), 2);
    assert_eq!(redis.answer_count(), 0);
}

#[test]
fn an_entry_expires_after_its_ttl() {
    let ollama = FakeOllama::start(&[MODEL]);
    let redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[]);
    let body = json!({"prompt": "short lived", "cache_ttl": 1});
    assert_eq!(x_cache(&generate(&service, &body)), "MISS");
    let key = redis.command("KEYS llm_response:*");
    let key = key.lines().find(|line| line.starts_with("llm_response:")).unwrap().to_string();
    let ttl = redis.command(&format!("TTL {key}"));
    assert_eq!(ttl.trim(), ":1", "cache_ttl reaches KeyDB");
    eventually(Duration::from_secs(10), "expiry in KeyDB", || {
        redis.command(&format!("EXISTS {key}")).trim() == ":0"
    });
    assert_eq!(x_cache(&generate(&service, &body)), "MISS", "expired in both tiers");
    assert_eq!(ollama.generate_hits(), 2);
}

#[test]
fn the_in_process_tier_holds_at_most_cache_max_size_entries() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, None, &[("CACHE_MAX_SIZE", "10")]);
    let prompt = |index: usize| json!({"prompt": format!("distinct prompt {index}")});
    for index in 0..50 {
        assert_eq!(x_cache(&generate(&service, &prompt(index))), "MISS");
    }
    // Hits do not insert, so reading the ten newest leaves the cache as it was.
    for index in (40..50).rev() {
        assert_eq!(
            x_cache(&generate(&service, &prompt(index))),
            "HIT",
            "prompt {index} is among the 10 newest"
        );
    }
    assert_eq!(x_cache(&generate(&service, &prompt(39))), "MISS", "the 11th newest was evicted");
    assert_eq!(ollama.generate_hits(), 51);
}

#[test]
fn cache_clear_counts_and_removes_only_our_keys() {
    let ollama = FakeOllama::start(&[MODEL]);
    let redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[]);
    for (prompt, character) in [("a", "peter"), ("b", "peter"), ("c", "peter"), ("d", "lois"), ("e", "lois")]
    {
        assert_eq!(generate(&service, &json!({"prompt": prompt, "character_name": character})).status, 200);
    }
    redis.command("SET someone_elses:key 1");
    let client = Client::new();
    let cleared = client.send("POST", &service.url("/cache/clear"), br#"{"character": "peter"}"#);
    assert_eq!(cleared.json(), json!({"cleared": 3}));
    assert_eq!(x_cache(&generate(&service, &json!({"prompt": "a", "character_name": "peter"}))), "MISS");
    assert_eq!(x_cache(&generate(&service, &json!({"prompt": "d", "character_name": "lois"}))), "HIT");
    let cleared = client.send("POST", &service.url("/cache/clear"), b"");
    assert_eq!(cleared.json(), json!({"cleared": 3}), "lois's two and peter's new one");
    assert_eq!(redis.answer_count(), 0, "no answer is left");
    assert_eq!(redis.command("EXISTS someone_elses:key").trim(), ":1", "the foreign key is");
    let bad = client.send("POST", &service.url("/cache/clear"), br#"{"character": 5}"#);
    assert_eq!((bad.status, bad.json()["field"].clone()), (400, json!("character")));
}

#[test]
fn clearing_a_character_leaves_a_character_whose_name_contains_it() {
    let ollama = FakeOllama::start(&[MODEL]);
    let redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[]);
    let (lois, peter_lois) = (
        json!({"prompt": "x", "character_name": "lois"}),
        json!({"prompt": "x", "character_name": "peter:lois"}),
    );
    generate(&service, &lois);
    generate(&service, &peter_lois);
    let cleared = Client::new().send("POST", &service.url("/cache/clear"), br#"{"character": "lois"}"#);
    assert_eq!(cleared.json(), json!({"cleared": 1}));
    assert_eq!(x_cache(&generate(&service, &peter_lois)), "HIT", "peter:lois keeps its answer");
    assert_eq!(x_cache(&generate(&service, &lois)), "MISS");
    let cleared = Client::new().send("POST", &service.url("/cache/clear"), br#"{"character": "peter:lois"}"#);
    assert_eq!(cleared.json(), json!({"cleared": 1}));
    // A prompt's hash is no character: it clears nothing in either tier.
    generate(&service, &lois);
    let hash: String = sha2::Sha256::digest(b"x").iter().map(|byte| format!("{byte:02x}")).collect();
    let body = json!({ "character": hash }).to_string();
    let cleared = Client::new().send("POST", &service.url("/cache/clear"), body.as_bytes());
    assert_eq!(cleared.json(), json!({"cleared": 0}), "the count is what was removed, in every tier");
    assert_eq!(x_cache(&generate(&service, &lois)), "HIT");
    assert_eq!(redis.answer_count(), 1, "lois's answer to x stays in KeyDB");
}

#[test]
fn a_keydb_outage_degrades_to_the_model_and_caching_resumes_after_it() {
    let ollama = FakeOllama::start(&[MODEL]);
    let mut redis = RedisServer::start();
    let service = service(&ollama, Some(&redis), &[("CACHE_MAX_SIZE", "0")]);
    let body = json!({"prompt": "through the outage"});
    assert_eq!(x_cache(&generate(&service, &body)), "MISS");
    assert_eq!(x_cache(&generate(&service, &body)), "HIT", "served from KeyDB (no process tier)");

    redis.kill();
    for index in 0..5 {
        let reply = generate(&service, &json!({"prompt": format!("during outage {index}")}));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let health = Client::new().get(&service.url("/health"));
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["cache_status"], "disconnected");
    assert_eq!(health.json()["status"], "degraded");
    let warnings = service
        .logs()
        .iter()
        .filter(|line| line["message"].as_str().unwrap_or("").starts_with("shared cache unavailable"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage, not per request");
    let clear = Client::new().send("POST", &service.url("/cache/clear"), b"");
    assert_eq!(clear.status, 503, "{}", clear.body);
    let said = clear.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(said.starts_with("the shared cache is unavailable"), "blames the cache, not the model: {said}");

    redis.restart();
    let after = json!({"prompt": "after the outage"});
    eventually(Duration::from_secs(20), "caching to resume", || {
        generate(&service, &after);
        x_cache(&generate(&service, &after)) == "HIT"
    });
    assert_eq!(Client::new().get(&service.url("/health")).json()["cache_status"], "connected");
}

#[test]
fn fifty_identical_concurrent_requests_make_one_backend_call() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(800));
    let service = service(&ollama, None, &[]);
    let body = json!({"prompt": "everyone asks the same thing", "character_name": "peter"}).to_string();
    let client = Client::new();
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let (client, url, body) = (client.clone(), service.url("/generate"), body.clone());
            std::thread::spawn(move || client.send("POST", &url, body.as_bytes()))
        })
        .collect();
    let replies: Vec<Reply> = workers.into_iter().map(|worker| worker.join().unwrap()).collect();
    assert!(replies.iter().all(|reply| reply.status == 200));
    let texts: std::collections::HashSet<String> =
        replies.iter().map(|reply| reply.json()["response"].as_str().unwrap().to_string()).collect();
    assert_eq!(texts.len(), 1, "identical answers");
    assert_eq!(ollama.generate_hits(), 1, "one backend request for 50 identical ones");
}

#[test]
fn a_streamed_answer_is_stored_and_replayed() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, None, &[]);
    let body = json!({"prompt": "stream me once please", "stream": true});
    let first = generate(&service, &body);
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let replay = generate(&service, &body);
    assert_eq!((replay.status, x_cache(&replay)), (200, "HIT"));
    assert_eq!(replay.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = replay.body.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["cache_hit"], true);
    assert_eq!(last["response"], "stream me once please");
    let whole = generate(&service, &json!({"prompt": "stream me once please"}));
    assert_eq!(x_cache(&whole), "HIT");
    assert_eq!(whole.json()["response"], "stream me once please");
    assert_eq!(ollama.generate_hits(), 1);
}

#[test]
fn with_stale_if_error_an_expired_answer_stands_in_while_the_backend_fails() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, None, &[("STALE_IF_ERROR", "60")]);
    let body = json!({"prompt": "keep me around", "cache_ttl": 1});
    let fresh = generate(&service, &body);
    assert_eq!(x_cache(&fresh), "MISS");
    ollama.fail_next(100, Fault::Status(500));
    let mut stale = None;
    eventually(Duration::from_secs(10), "the entry to go stale", || {
        let reply = generate(&service, &body);
        let done = x_cache(&reply) == "STALE";
        stale = Some(reply);
        done
    });
    let stale = stale.unwrap();
    assert_eq!(stale.status, 200);
    assert_eq!(stale.json()["stale"], true);
    assert_eq!(stale.json()["response"], fresh.json()["response"]);
}

#[test]
fn a_waiter_that_disconnects_does_not_cancel_the_generation() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_latency(Duration::from_millis(800));
    let service = service(&ollama, None, &[]);
    let body = json!({"prompt": "wait for me or not"}).to_string();
    let leader = {
        let (client, url, body) = (Client::new(), service.url("/generate"), body.clone());
        std::thread::spawn(move || client.send("POST", &url, body.as_bytes()))
    };
    eventually(Duration::from_secs(10), "the leader's generation to start", || {
        ollama.open_generations() == 1
    });
    {
        use std::io::Write;
        let mut waiter = std::net::TcpStream::connect(service.addr()).unwrap();
        let request = format!(
            "POST /generate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        waiter.write_all(request.as_bytes()).unwrap();
    } // the waiter hangs up without reading its answer
    let reply = leader.join().unwrap();
    assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"), "{}", reply.body);
    assert_eq!(x_cache(&generate(&service, &serde_json::from_str(&body).unwrap())), "HIT");
    assert_eq!(ollama.generate_hits(), 1);
    assert_eq!(ollama.cancelled_streams(), 0);
}

/// `llm_service_cache_errors_total` from /metrics/prometheus.
fn cache_errors(service: &Service) -> u64 {
    let text = Client::new().get(&service.url("/metrics/prometheus")).body;
    let line =
        text.lines().find(|line| line.starts_with("llm_service_cache_errors_total ")).expect("the metric");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn after_a_keydb_failure_requests_skip_it_instead_of_each_timing_out() {
    let ollama = FakeOllama::start(&[MODEL]);
    let mut redis = RedisServer::start();
    // No background check in the way: the one at start-up has passed.
    let service = service(&ollama, Some(&redis), &[("HEALTH_CHECK_INTERVAL", "3600")]);
    assert_eq!(x_cache(&generate(&service, &json!({"prompt": "before"}))), "MISS");
    redis.kill();
    let started = Instant::now();
    for index in 0..20 {
        let reply = generate(&service, &json!({"prompt": format!("during {index}")}));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let elapsed = started.elapsed();
    let errors = cache_errors(&service);
    // One failure opens the breaker for 2 s; should the 20 take longer, each
    // later period may cost one more.
    let periods = 1 + elapsed.as_secs() / 2;
    assert!(errors >= 1 && errors <= periods + 1, "{errors} KeyDB errors in {elapsed:?} for 20 requests");
}
