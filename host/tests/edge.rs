//! The edge tier against the real binary: exact repeats answered by the
//! host from the replays the handler offered (`Cache-Status: ...;
//! detail=edge`), with fresh per-response values, purged by everything that
//! changes an answer, kept apart per handler version, and counted like the
//! handler's own hits.

use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Reply, Service, component_variant, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
const MISBEHAVE: &str = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");
const PETER: &str = env!("LLM_SERVICE_PLUGIN_PETER");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const OTHER: &str = "other:1b";
const TOKEN: &str = "let-me-in-edge-tests";
const EDGE: &str = "llm-service; hit; detail=edge";

fn service(ollama: &FakeOllama, extra: &[(&str, &str)]) -> Service {
    Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("ADMIN_TOKEN", TOKEN)])
        .envs(extra)
        .start()
}

fn post(service: &Service, path: &str, body: &Value) -> Reply {
    Client::new().send("POST", &service.url(path), body.to_string().as_bytes())
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("cache-status").unwrap_or("none")
}

/// Sends `body` to `path` three times: the miss, the handler's hit (which
/// offers the replay) and the edge's answer.
fn three(service: &Service, path: &str, body: &Value) -> [Reply; 3] {
    let replies = [post(service, path, body), post(service, path, body), post(service, path, body)];
    for reply in &replies {
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    assert_eq!(cache_status(&replies[0]), "llm-service; fwd=miss", "{path}");
    assert_eq!(cache_status(&replies[1]), "llm-service; hit; detail=memory", "{path}");
    assert_eq!(cache_status(&replies[2]), EDGE, "{path}: the third identical request");
    assert_eq!(replies[2].header("x-cache"), Some("HIT"), "{path}");
    assert!(replies[2].header("age").is_some_and(|age| age.parse::<u64>().is_ok()), "{path}");
    let ids: Vec<_> = replies.iter().map(|reply| reply.header("x-request-id").expect("an id")).collect();
    assert_ne!(ids[1], ids[2], "{path}: the edge gives each answer a fresh request id");
    assert_eq!(
        replies[1].header("x-handler-version"),
        replies[2].header("x-handler-version"),
        "{path}: the replay is the version's that offered it"
    );
    replies
}

/// The JSON objects of an NDJSON body, or of a server-sent event stream's
/// `data:` lines (without `[DONE]`).
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| line.strip_prefix("data: ").unwrap_or(line))
        .filter(|line| !line.is_empty() && *line != "[DONE]")
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect()
}

#[test]
fn the_third_identical_request_is_answered_by_the_edge_in_every_dialect() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);

    let seed = three(&service, "/generate", &json!({"prompt": "edge seed", "character_name": "lois"}));
    let (handler, edge) = (seed[1].json(), seed[2].json());
    assert_eq!(edge["response"], handler["response"]);
    assert_eq!((&edge["cache_hit"], &edge["metadata"]), (&json!(true), &handler["metadata"]));
    assert!(edge["generation_time"].is_f64(), "{edge}");
    assert_ne!(
        edge["generation_time"], handler["generation_time"],
        "generation_time is measured, not stored"
    );

    let chat =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "edge chat"}], "stream": false});
    let chat = three(&service, "/api/chat", &chat);
    let (handler, edge) = (chat[1].json(), chat[2].json());
    assert_eq!(edge["message"], handler["message"]);
    assert_eq!(edge["done"], true);
    assert_ne!(edge["created_at"], handler["created_at"], "created_at is now");
    assert!(edge["total_duration"].is_u64(), "{edge}");

    let streamed = json!({"model": MODEL, "messages": [{"role": "user", "content": "edge chat streamed"}]});
    let streamed = three(&service, "/api/chat", &streamed);
    assert_eq!(streamed[2].header("content-type"), Some("application/x-ndjson"));
    let (handler, edge) = (events(&streamed[1].body), events(&streamed[2].body));
    let text = |lines: &[Value]| {
        lines.iter().filter_map(|line| line["message"]["content"].as_str()).collect::<String>()
    };
    assert_eq!(text(&edge), text(&handler));
    assert!(!text(&edge).is_empty());
    assert_eq!(edge.last().unwrap()["done"], true);
    assert_ne!(edge[0]["created_at"], handler[0]["created_at"]);

    let openai = json!({"model": MODEL, "messages": [{"role": "user", "content": "edge openai"}]});
    let openai = three(&service, "/v1/chat/completions", &openai);
    let (handler, edge) = (openai[1].json(), openai[2].json());
    assert_eq!(edge["choices"], handler["choices"]);
    assert_eq!(edge["usage"], handler["usage"]);
    let id = edge["id"].as_str().expect("an id");
    assert!(id.starts_with("chatcmpl-") && id.len() > "chatcmpl-".len(), "{id}");
    assert_ne!(edge["id"], handler["id"], "each answer has an id of its own");
    assert!(edge["created"].is_u64());

    let sse = json!({"model": MODEL, "messages": [{"role": "user", "content": "edge sse"}], "stream": true,
                     "stream_options": {"include_usage": true}});
    let sse = three(&service, "/v1/chat/completions", &sse);
    assert_eq!(sse[2].header("content-type"), Some("text/event-stream"));
    assert!(sse[2].body.trim_end().ends_with("data: [DONE]"), "{}", sse[2].body);
    let (handler, edge) = (events(&sse[1].body), events(&sse[2].body));
    assert_eq!(edge.len(), handler.len());
    let edge_id = &edge[0]["id"];
    assert!(edge.iter().all(|chunk| &chunk["id"] == edge_id), "one id for the whole stream");
    assert_ne!(edge_id, &handler[0]["id"]);
    let choices = |chunks: &[Value]| chunks.iter().map(|chunk| chunk["choices"].clone()).collect::<Vec<_>>();
    assert_eq!(choices(&edge), choices(&handler));
    assert_eq!(edge.last().unwrap()["usage"], handler.last().unwrap()["usage"]);

    // The client's own request id is answered back on a replay.
    let mine = Client::new().send_with_headers(
        "POST",
        &service.url("/generate"),
        &[("x-request-id", "my-own-id-1")],
        json!({"prompt": "edge seed", "character_name": "lois"}).to_string().as_bytes(),
    );
    assert_eq!((cache_status(&mine), mine.header("x-request-id")), (EDGE, Some("my-own-id-1")));
    assert_eq!(ollama.generate_hits() + ollama.chat_requests().len(), 5, "one backend call per question");
}

#[test]
fn the_same_request_in_other_bytes_or_with_other_named_headers_is_the_handlers() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let body = json!({"prompt": "hello edge", "character_name": "lois", "settings": {"temperature": 0.5}});
    three(&service, "/generate", &body);
    let reordered = r#"{"settings": {"temperature": 0.5}, "character_name": "lois", "prompt": "hello edge"}"#;
    let reply = Client::new().send("POST", &service.url("/generate"), reordered.as_bytes());
    assert_eq!(
        cache_status(&reply),
        "llm-service; hit; detail=memory",
        "keys in another order: the handler's hit"
    );

    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "vary"}], "stream": false});
    three(&service, "/api/chat", &chat);
    let with_header = |name: &str, value: &str| {
        Client::new().send_with_headers(
            "POST",
            &service.url("/api/chat"),
            &[(name, value)],
            chat.to_string().as_bytes(),
        )
    };
    let other_character = with_header("x-character", "peter");
    assert_ne!(cache_status(&other_character), EDGE, "X-Character is part of the answer");
    let no_cache = with_header("cache-control", "no-cache");
    assert_eq!(
        cache_status(&no_cache),
        "llm-service; fwd=bypass",
        "Cache-Control: no-cache skips every tier"
    );
    assert_eq!(no_cache.header("x-cache"), Some("BYPASS"));
}

/// Warms the edge for `body` on `service`, runs `purge`, and checks that
/// the next identical request is the handler's.
fn purged_by(service: &Service, body: &Value, what: &str, purge: impl FnOnce()) {
    let replies = [
        post(service, "/generate", body),
        post(service, "/generate", body),
        post(service, "/generate", body),
    ];
    assert_eq!(
        cache_status(&replies[2]),
        EDGE,
        "before {what}: {:?}",
        replies.iter().map(cache_status).collect::<Vec<_>>()
    );
    purge();
    let after = post(service, "/generate", body);
    assert_eq!(after.status, 200, "after {what}: {}", after.body);
    assert_ne!(cache_status(&after), EDGE, "after {what}, the handler answers");
}

fn admin(service: &Service, method: &str, path: &str, body: &[u8]) -> Reply {
    let reply = service.admin(TOKEN, method, path, body);
    assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    reply
}

#[test]
fn every_change_of_what_an_answer_is_purges_the_edge() {
    let ollama = FakeOllama::start(&[MODEL, OTHER]);
    let service = service(&ollama, &[]);
    let client = Client::new();
    let lois = json!({"prompt": "purge me", "character_name": "lois"});
    let peter = json!({"prompt": "purge me", "character_name": "peter"});

    purged_by(&service, &lois, "a clear of everything", || {
        assert_eq!(client.send("POST", &service.url("/cache/clear"), b"").status, 200);
    });
    // A clear of one character purges its replays, not another's.
    for _ in 0..3 {
        post(&service, "/generate", &peter);
    }
    purged_by(&service, &lois, "a clear of one character", || {
        let cleared = client.send("POST", &service.url("/cache/clear"), br#"{"character": "lois"}"#);
        assert_eq!(cleared.status, 200);
    });
    assert_eq!(
        cache_status(&post(&service, "/generate", &peter)),
        EDGE,
        "peter's replay outlives lois's clear"
    );

    purged_by(&service, &lois, "a model switch", || {
        assert_eq!(
            client
                .send("POST", &service.url("/model"), format!(r#"{{"model": "{OTHER}"}}"#).as_bytes())
                .status,
            200
        );
    });
    purged_by(&service, &lois, "a model split", || {
        admin(&service, "PUT", "/model-split", format!(r#"{{"split": "{MODEL}=1,{OTHER}=1"}}"#).as_bytes());
    });
    // While a split decides the model, nothing naming none is replayed.
    let split = [
        post(&service, "/generate", &lois),
        post(&service, "/generate", &lois),
        post(&service, "/generate", &lois),
    ];
    assert!(split.iter().all(|reply| cache_status(reply) != EDGE));
    admin(&service, "DELETE", "/model-split", b"");

    let variant = component_variant(HANDLER, &fresh_directory(), "edge");
    purged_by(&service, &lois, "a handler push", || {
        admin(&service, "PUT", "/components/handler", &std::fs::read(&variant).unwrap());
    });
    purged_by(&service, &lois, "a rollback", || {
        admin(&service, "POST", "/components/handler/rollback", b"");
    });
    purged_by(&service, &lois, "a canary", || {
        admin(&service, "PUT", "/components/handler/canary?percent=0", &std::fs::read(&variant).unwrap());
    });
    purged_by(&service, &lois, "a canary's share", || {
        admin(&service, "PUT", "/components/handler/canary?percent=0", b"");
    });
    purged_by(&service, &lois, "a dropped canary", || {
        admin(&service, "DELETE", "/components/handler/canary", b"");
    });
    purged_by(&service, &lois, "a plugin push", || {
        admin(&service, "PUT", "/plugins", &std::fs::read(PETER).unwrap());
    });
    purged_by(&service, &lois, "a plugin unload", || {
        admin(&service, "DELETE", "/plugins/peter", b"");
    });

    // A pushed handler that answers otherwise is what the very next request gets.
    for _ in 0..3 {
        post(&service, "/generate", &lois);
    }
    admin(&service, "PUT", "/components/handler", &std::fs::read(MISBEHAVE).unwrap());
    let after = post(&service, "/generate", &lois);
    assert_ne!(cache_status(&after), EDGE);
    assert_eq!(after.body, "/generate", "the pushed handler's own answer");
}

#[test]
fn a_replay_ends_with_the_answers_ttl() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("LLM_RESPONSE_CACHE_TTL", "1")]);
    let body = json!({"prompt": "short lived"});
    let started = Instant::now();
    let replies = [
        post(&service, "/generate", &body),
        post(&service, "/generate", &body),
        post(&service, "/generate", &body),
    ];
    if started.elapsed() >= Duration::from_millis(900) {
        // A loaded machine took the whole second: nothing left to replay.
        return;
    }
    assert_eq!(cache_status(&replies[2]), EDGE);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = post(&service, "/generate", &body);
        if cache_status(&reply) != EDGE {
            assert!(started.elapsed() >= Duration::from_secs(1), "a replay was dropped before its TTL ended");
            break;
        }
        assert!(Instant::now() < until, "the replay outlived its answer's TTL");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ollama.generate_hits(), 2, "after the TTL the handler generates again");
}

#[test]
fn a_canary_and_the_stable_version_keep_replays_of_their_own() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let variant = component_variant(HANDLER, &fresh_directory(), "edge-canary");
    let started =
        admin(&service, "PUT", "/components/handler/canary?percent=50", &std::fs::read(variant).unwrap());
    let canary = started.json()["sha256"].as_str().unwrap()[..12].to_string();
    let body = json!({"prompt": "which version?"}).to_string();
    let send = |id: &str| {
        Client::new().send_with_headers(
            "POST",
            &service.url("/generate"),
            &[("x-request-id", id)],
            body.as_bytes(),
        )
    };
    // Request ids routed to each version (the routing key is the id).
    let (mut on_canary, mut on_stable) = (None, None);
    for n in 0..64 {
        let id = format!("route-{n}");
        let reply = send(&id);
        let slot = if reply.header("x-handler-version") == Some(canary.as_str()) {
            &mut on_canary
        } else {
            &mut on_stable
        };
        slot.get_or_insert(id);
    }
    let (on_canary, on_stable) =
        (on_canary.expect("an id on the canary"), on_stable.expect("an id on stable"));
    let mut edge_answers = [0, 0];
    for round in 0..6 {
        for (index, id) in [&on_canary, &on_stable].into_iter().enumerate() {
            let reply = send(id);
            let version = reply.header("x-handler-version").unwrap();
            assert_eq!(version == canary, index == 0, "round {round}: {id} got {version}");
            if cache_status(&reply) == EDGE {
                edge_answers[index] += 1;
            }
        }
    }
    assert!(edge_answers.iter().all(|count| *count >= 4), "both versions replay their own: {edge_answers:?}");
}

#[test]
fn edge_hits_are_counted_like_the_handlers_hits() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[]);
    let client = Client::new();
    let body = json!({"prompt": "count me", "character_name": "meg"});
    three(&service, "/generate", &body);
    let before = client.get(&service.url("/metrics")).json();
    for _ in 0..5 {
        assert_eq!(cache_status(&post(&service, "/generate", &body)), EDGE);
    }
    let after = client.get(&service.url("/metrics")).json();
    let delta = |field: &str| after[field].as_u64().unwrap() - before[field].as_u64().unwrap();
    assert_eq!(delta("cache_hits"), 5, "{after}");
    assert_eq!(delta("cache_misses"), 0);
    // Five replays and the first /metrics call.
    assert_eq!(delta("requests_total"), 6, "{after}");
    assert_eq!(
        after["characters"]["meg"].as_u64().unwrap() - before["characters"]["meg"].as_u64().unwrap(),
        5
    );
    let prometheus = client.get(&service.url("/metrics/prometheus")).body;
    assert!(
        prometheus.contains("llm_service_edge_hits_total 6"),
        "the third request of three and five more: {prometheus}"
    );
}

#[test]
fn with_the_edge_off_every_answer_is_the_handlers() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama, &[("EDGE_CACHE_MAX_BYTES", "0")]);
    let body = json!({"prompt": "no edge"});
    let statuses: Vec<String> =
        (0..5).map(|_| cache_status(&post(&service, "/generate", &body)).to_string()).collect();
    assert_eq!(statuses[0], "llm-service; fwd=miss");
    assert!(statuses[1..].iter().all(|status| status == "llm-service; hit; detail=memory"), "{statuses:?}");
    assert_eq!(ollama.generate_hits(), 1);
}

#[test]
fn a_clear_or_model_switch_on_another_replica_purges_this_ones_edge() {
    let ollama = FakeOllama::start(&[MODEL, OTHER]);
    let redis = RedisServer::start();
    let shared = [("REDIS_URL", redis.url())];
    let shared: Vec<(&str, &str)> = shared.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let (a, b) = (service(&ollama, &shared), service(&ollama, &shared));
    let body = json!({"prompt": "fleet purge", "character_name": "lois"});
    let from_keydb =
        [post(&b, "/generate", &body), post(&b, "/generate", &body), post(&b, "/generate", &body)];
    assert_eq!(cache_status(&from_keydb[2]), EDGE);
    let fresh_on_a = post(&a, "/generate", &body);
    assert_eq!(
        cache_status(&fresh_on_a),
        "llm-service; hit; detail=keydb",
        "A's first hit comes from the store"
    );

    let client = Client::new();
    assert_eq!(client.send("POST", &a.url("/cache/clear"), b"").status, 200);
    eventually_not_edge(&b, &body, "a clear on A");

    for _ in 0..3 {
        post(&b, "/generate", &body);
    }
    assert_eq!(cache_status(&post(&b, "/generate", &body)), EDGE);
    assert_eq!(
        client.send("POST", &a.url("/model"), format!(r#"{{"model": "{OTHER}"}}"#).as_bytes()).status,
        200
    );
    eventually_not_edge(&b, &body, "a model switch on A");
    assert_eq!(post(&b, "/generate", &body).json()["model"], OTHER);
}

/// Polls until `service` answers `body` from the handler (a fleet event
/// arrives within the replicas' poll interval).
fn eventually_not_edge(service: &Service, body: &Value, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while cache_status(&post(service, "/generate", body)) == EDGE {
        assert!(Instant::now() < until, "{what} did not purge the other replica's edge");
        std::thread::sleep(Duration::from_millis(50));
    }
}
