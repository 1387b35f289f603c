//! Client keys across replicas that share a real store (one redis-server,
//! then a real three-master Redis Cluster): a key made on one replica is
//! admitted by the other, a revocation is refused by the other within a
//! second, a limit holds for the fleet and not per replica, the use the
//! admin API shows is the fleet's, and with the store killed each replica
//! goes on serving, holding each key to its limit alone.

use std::time::{Duration, Instant};

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::keys::{self, post};
use llm_service_test_support::redis_cluster::RedisCluster;
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Reply, Service, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-keys-fleet";

/// A replica on `store` (`REDIS_URL` or `REDIS_CLUSTER_NODES`, and its
/// value) requiring keys, with a keys file of its own.
fn replica(ollama: &FakeOllama, store: (&str, &str)) -> Service {
    let file = fresh_directory().join("keys.json");
    Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("OLLAMA_MODEL", MODEL),
            ("ADMIN_TOKEN", TOKEN),
            ("CLIENT_KEYS", "required"),
            ("CLIENT_KEYS_FILE", &file.display().to_string()),
            store,
        ])
        .start()
}

fn ask(service: &Service, secret: &str, prompt: &str) -> Reply {
    post(service, "/generate", &[("x-api-key", secret)], &json!({"prompt": prompt}))
}

/// Polls `check` until it holds (a loaded machine may be slow), and says
/// how long that took.
fn eventually(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < Duration::from_secs(20), "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// How many of `count` requests with `secret`, alternating over
/// `replicas`, were admitted; every other one must be a 429.
fn admitted(replicas: &[&Service], secret: &str, count: usize, label: &str) -> usize {
    let mut admitted = 0;
    for index in 0..count {
        let reply = ask(replicas[index % replicas.len()], secret, &format!("{label} {index}"));
        match reply.status {
            200 => admitted += 1,
            429 => assert!(reply.json()["error"].as_str().unwrap().contains("rpm limit"), "{}", reply.body),
            other => panic!("{label} {index}: {other} {}", reply.body),
        }
    }
    admitted
}

/// Key `id`'s use today as `service`'s admin API lists it.
fn use_of(service: &Service, id: &Value) -> Value {
    let listed = service.admin(TOKEN, "GET", "/keys", b"").json();
    let key = listed["keys"].as_array().unwrap().iter().find(|key| key["id"] == *id).cloned();
    key.unwrap_or_else(|| panic!("{id} not listed: {listed}"))["use"].clone()
}

#[test]
fn a_key_made_or_revoked_on_one_replica_holds_on_the_other_and_limits_are_the_fleets() {
    let mut redis = RedisServer::start();
    let ollama = FakeOllama::start(&[MODEL]);
    let url = redis.url();
    let (a, b) = (replica(&ollama, ("REDIS_URL", &url)), replica(&ollama, ("REDIS_URL", &url)));

    let key = keys::create(&a, TOKEN, &json!({"tenant": "team-f", "limits": {"rpm": 6}}));
    let secret = key["secret"].as_str().unwrap();
    eventually("the key made on A is admitted by B", || ask(&b, secret, "made on A").status == 200);
    assert_eq!(ask(&a, secret, "made on A").status, 200);

    // Six a minute for the fleet, not six per replica: two were admitted
    // above, and of ten more over both, four.
    assert_eq!(admitted(&[&a, &b], secret, 10, "fleet limit"), 4);
    eventually("the use A lists is the fleet's", || use_of(&a, &key["id"])["requests_today"] == 6);
    assert_eq!(use_of(&b, &key["id"])["requests_today"], 6, "and so is B's");

    let other = keys::secret(&a, TOKEN, &json!({"tenant": "team-g", "limits": {"rpm": 3}}));
    eventually("B knows the second key", || ask(&b, &other, "known").status == 200);
    let revoked = a.admin(TOKEN, "DELETE", &format!("/keys/{}", key["id"].as_str().unwrap()), b"");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let took = eventually("B refuses the key revoked on A", || ask(&b, secret, "revoked").status == 401);
    eprintln!("B refused the revoked key after {took:?}");

    // The store killed: nothing is refused for it, and each replica holds
    // the key to its limit alone (B counted one of the three already).
    redis.kill();
    assert_eq!(ask(&a, &other, "store down on A").status, 200);
    assert_eq!(admitted(&[&a], &other, 4, "alone on A"), 2);
    assert_eq!(admitted(&[&b], &other, 4, "alone on B"), 2);
    for replica in [&a, &b] {
        replica.wait_for_log(Duration::from_secs(10), |line| {
            line["level"] == "WARN"
                && line["message"]
                    .as_str()
                    .is_some_and(|message| message.contains("counted by each replica alone"))
        });
    }
    let refused = keys::post(&a, "/v1/chat/completions", &[("x-api-key", "lls-never-made")], &json!({}));
    assert_eq!(refused.status, 401, "an unknown key is still refused: {}", refused.body);
}

#[test]
fn on_a_redis_cluster_keys_and_their_limits_are_shared_by_two_replicas() {
    let cluster = RedisCluster::start();
    let ollama = FakeOllama::start(&[MODEL]);
    let nodes = cluster.seed_nodes();
    let store = ("REDIS_CLUSTER_NODES", nodes.as_str());
    let (a, b) = (replica(&ollama, store), replica(&ollama, store));

    let key = keys::create(&b, TOKEN, &json!({"tenant": "team-c", "limits": {"rpm": 5}}));
    let secret = key["secret"].as_str().unwrap();
    eventually("the key made on B is admitted by A", || ask(&a, secret, "made on B").status == 200);
    assert_eq!(admitted(&[&a, &b], secret, 8, "cluster limit"), 4, "five a minute for the fleet");
    eventually("the use B lists is the fleet's", || use_of(&b, &key["id"])["requests_today"] == 5);
    let revoked = b.admin(TOKEN, "DELETE", &format!("/keys/{}", key["id"].as_str().unwrap()), b"");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    eventually("A refuses the key revoked on B", || ask(&a, secret, "revoked").status == 401);
}
