//! Single-flight across replicas, on a real three-master Redis Cluster and
//! three service processes: identical requests on any replica make one
//! backend call, and a leader killed mid-generation is replaced by one
//! follower. Also on one redis-server, and with the store down (each
//! replica then coalesces in its own process).

use std::sync::{Arc, Barrier, RwLock, RwLockReadGuard};
use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::ndjson::NdjsonStream;
use llm_service_test_support::redis_cluster::RedisCluster;
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Service};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
/// Ten words: with 100 ms between tokens, a generation of about a second.
const REPLY: &str = "one two three four five six seven eight nine ten";

/// The 1400-request relay test runs alone: beside this file's other tests
/// on a loaded 2-core machine its leader's flights ended before the relays
/// reached them (a second backend call) or ran past the request timeout.
static ALONE: RwLock<()> = RwLock::new(());

/// What every other test holds while it runs.
fn beside_others() -> RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(|poison| poison.into_inner())
}

fn replica(ollama: &FakeOllama, cluster: &RedisCluster) -> Service {
    replica_on(ollama, ("REDIS_CLUSTER_NODES", &cluster.seed_nodes()))
}

/// A replica whose shared store is `store` (REDIS_URL or REDIS_CLUSTER_NODES).
fn replica_on(ollama: &FakeOllama, store: (&str, &str)) -> Service {
    Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("OLLAMA_MODEL", MODEL), store])
        .start()
}

/// `count` identical requests at once, taking `replicas` in turn; the
/// `streamed` ones streamed, the others whole.
fn at_once(
    replicas: &[&Service],
    prompt: &str,
    count: usize,
    streamed: fn(usize) -> bool,
) -> Vec<Result<String, String>> {
    let start = Barrier::new(count);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..count)
            .map(|index| {
                let (replica, start) = (replicas[index % replicas.len()], &start);
                scope.spawn(move || {
                    start.wait();
                    ask(replica, prompt, streamed(index))
                })
            })
            .collect();
        clients.into_iter().map(|client| client.join().unwrap()).collect()
    })
}

/// A backend that takes about a second per generation.
fn slow_backend() -> FakeOllama {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_reply(Some(REPLY));
    ollama.set_token_delay(Duration::from_millis(100));
    ollama
}

/// The answer's text, asked whole or streamed (then the pieces must add up
/// to the final line's whole answer).
fn ask(service: &Service, prompt: &str, stream: bool) -> Result<String, String> {
    let body = json!({"prompt": prompt, "stream": stream});
    if !stream {
        let reply = service.generate(&body);
        return match reply.status {
            200 => Ok(reply.json()["response"].as_str().unwrap_or_default().to_string()),
            status => Err(format!("{status}: {}", reply.body)),
        };
    }
    let lines: Vec<Value> = NdjsonStream::post(service.addr(), "/generate", &body)
        .collect()
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let last = lines.last().ok_or("no line")?;
    if last.get("error").is_some() || last["done"] != true {
        return Err(format!("the stream ended with {last}"));
    }
    let pieces: String =
        lines[..lines.len() - 1].iter().filter_map(|line| line["response"].as_str()).collect();
    let whole = last["response"].as_str().unwrap_or_default().to_string();
    if pieces != whole {
        return Err(format!("pieces {pieces:?} differ from the whole {whole:?}"));
    }
    Ok(whole)
}

/// `llm_service_cache_shared_flights_total{role}` on `service`.
fn shared_flights(service: &Service, role: &str) -> u64 {
    let text = Client::new().get(&service.url("/metrics/prometheus")).body;
    let prefix = format!("llm_service_cache_shared_flights_total{{role=\"{role}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().expect("a count"))
}

/// Polls `check` until it holds or 20 s pass.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "not within 20 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sixty_identical_requests_over_three_replicas_make_one_backend_call() {
    let _others = beside_others();
    let cluster = RedisCluster::start();
    let ollama = slow_backend();
    let replicas = [replica(&ollama, &cluster), replica(&ollama, &cluster), replica(&ollama, &cluster)];
    let every = [&replicas[0], &replicas[1], &replicas[2]];
    let answers: Vec<String> = at_once(&every, "the same question everywhere", 60, |index| index % 2 == 0)
        .into_iter()
        .map(|answer| answer.expect("every client is answered"))
        .collect();
    assert_eq!(ollama.generate_requests().len(), 1, "one backend call for the whole fleet");
    assert_eq!(answers[0], REPLY);
    assert!(answers.iter().all(|answer| *answer == answers[0]), "every client got the same text");
    let led: u64 = replicas.iter().map(|service| shared_flights(service, "led")).sum();
    let relayed: u64 = replicas.iter().map(|service| shared_flights(service, "relayed")).sum();
    assert_eq!(led, 1, "one replica led");
    assert!(relayed >= 1, "the others relayed its flight: {relayed}");
}

#[test]
fn a_leader_killed_mid_generation_is_replaced_by_one_follower() {
    let _others = beside_others();
    let cluster = RedisCluster::start();
    let ollama = slow_backend();
    let mut leader = replica(&ollama, &cluster);
    let followers = Arc::new([replica(&ollama, &cluster), replica(&ollama, &cluster)]);
    const PROMPT: &str = "asked while its leader dies";
    let mut leading =
        NdjsonStream::post(leader.addr(), "/generate", &json!({"prompt": PROMPT, "stream": true}));
    assert!(leading.next_line().is_some(), "the leader streams its first piece");

    // Whole requests on both other replicas, following it, and streamed
    // ones that have their first piece before the leader dies.
    let whole: Vec<_> = (0..4)
        .map(|index| {
            let followers = followers.clone();
            std::thread::spawn(move || ask(&followers[index % 2], PROMPT, false))
        })
        .collect();
    let mut streams: Vec<(String, NdjsonStream)> = (0..4)
        .map(|index| {
            let body = json!({"prompt": PROMPT, "stream": true});
            let mut stream = NdjsonStream::post(followers[index % 2].addr(), "/generate", &body);
            let (_, first) = stream.next_line().expect("a first piece");
            (first["response"].as_str().expect("a piece").to_string(), stream)
        })
        .collect();
    eventually("both replicas relay the leader's flight", || {
        followers.iter().all(|service| shared_flights(service, "relayed") >= 1)
    });
    leader.kill();
    let killed_at = std::time::Instant::now();

    for answer in whole {
        assert_eq!(answer.join().unwrap().as_deref(), Ok(REPLY), "the other replicas' whole answers");
    }
    for (first, stream) in &mut streams {
        let lines: Vec<Value> = std::iter::from_fn(|| stream.next_line().map(|(_, line)| line)).collect();
        let (last, pieces) = lines.split_last().expect("a final line");
        assert!(last.get("error").is_none(), "the stream continued after its leader died: {last}");
        let text: String = pieces.iter().filter_map(|line| line["response"].as_str()).collect();
        assert_eq!(format!("{first}{text}"), REPLY, "nothing sent twice, nothing lost");
        assert_eq!(last["response"], REPLY);
    }
    // A figure for the record, not a check: the lease's expiry plus a generation.
    eprintln!("every follower had its whole answer {:?} after the kill", killed_at.elapsed());
    let calls = ollama.generate_requests().len();
    assert_eq!(calls, 2, "the dead leader's call and its one replacement");
}

#[test]
fn replicas_on_one_redis_server_share_a_flight_too() {
    let _others = beside_others();
    let redis = RedisServer::start();
    let ollama = slow_backend();
    let (a, b) =
        (replica_on(&ollama, ("REDIS_URL", &redis.url())), replica_on(&ollama, ("REDIS_URL", &redis.url())));
    let answers = at_once(&[&a, &b], "asked of two replicas on one redis", 20, |index| index % 2 == 0);
    assert!(answers.iter().all(|answer| answer.as_deref() == Ok(REPLY)), "{answers:?}");
    assert_eq!(ollama.generate_requests().len(), 1, "one backend call for both replicas");
}

#[test]
fn with_the_store_down_each_replica_still_shares_its_own_flight() {
    let _others = beside_others();
    let mut redis = RedisServer::start();
    let ollama = slow_backend();
    let service = replica_on(&ollama, ("REDIS_URL", &redis.url()));
    redis.kill();
    let answers = at_once(&[&service], "asked while the store is down", 10, |index| index % 2 == 0);
    assert!(answers.iter().all(|answer| answer.as_deref() == Ok(REPLY)), "{answers:?}");
    assert_eq!(ollama.generate_requests().len(), 1, "the in-process flight still coalesces");
    assert_eq!(shared_flights(&service, "in_process"), 1, "its leader stayed in the process");
    assert_eq!(shared_flights(&service, "led"), 0);
}

#[test]
fn many_questions_at_once_over_three_replicas_make_one_call_each() {
    let _others = beside_others();
    let cluster = RedisCluster::start();
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(40));
    let replicas = [replica(&ollama, &cluster), replica(&ollama, &cluster), replica(&ollama, &cluster)];
    let prompts: Vec<String> =
        (0..20).map(|index| format!("question {index} asked six times over")).collect();
    let start = Barrier::new(120);
    let answers: Vec<(usize, Result<String, String>)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..120)
            .map(|index| {
                let (replica, prompt, start) =
                    (&replicas[(index / 20 + index) % 3], &prompts[index % 20], &start);
                scope.spawn(move || {
                    start.wait();
                    (index % 20, ask(replica, prompt, index % 3 == 0))
                })
            })
            .collect();
        clients.into_iter().map(|client| client.join().unwrap()).collect()
    });
    for (question, answer) in &answers {
        // The fake answers with the prompt's own words.
        assert_eq!(answer.as_deref(), Ok(prompts[*question].as_str()), "question {question}");
    }
    assert_eq!(ollama.generate_requests().len(), 20, "one backend call per distinct question");
}

#[test]
fn hundreds_of_relayed_flights_fit_a_small_descriptor_limit_with_no_second_call() {
    let _alone = ALONE.write().unwrap_or_else(|poison| poison.into_inner());
    let redis = RedisServer::start();
    let ollama = FakeOllama::start(&[MODEL]);
    // About 3 s a generation: the leader's flights outlast the relays' start.
    ollama.set_token_delay(Duration::from_millis(300));
    let store = ("REDIS_URL", redis.url());
    let wide = [("OLLAMA_BASE_URL", ollama.url()), ("OLLAMA_MODEL", MODEL.to_string())];
    // What is asserted is calls and descriptors, not time: a loaded machine
    // may take longer than the default 30 s over 1400 requests (the
    // client gives up at 60).
    let patient = ("REQUEST_TIMEOUT", "50");
    let leader = Service::builder(BINARY)
        .envs(&[(wide[0].0, &wide[0].1), (wide[1].0, &wide[1].1), (store.0, &store.1), patient])
        .env("MAX_CONCURRENT_REQUESTS", "1000")
        .start();
    // 1024 descriptors: 700 clients and 700 relayed flights at once (the service port takes 1024 - 320 = 704 connections).
    let relay = Service::builder(BINARY)
        .envs(&[(wide[0].0, &wide[0].1), (wide[1].0, &wide[1].1), (store.0, &store.1), patient])
        .open_files_limit(1024)
        .start();
    let count = 700;
    let prompts: Vec<String> =
        (0..count).map(|index| format!("one two three four five six seven eight nine {index}")).collect();
    let answers: Vec<(usize, Result<String, String>)> = std::thread::scope(|scope| {
        let led = ask_each(scope, &leader, &prompts, 0);
        eventually("the leader leads every flight", || shared_flights(&leader, "led") == count as u64);
        let relayed = ask_each(scope, &relay, &prompts, 1);
        led.into_iter().chain(relayed).map(|client| client.join().unwrap()).collect()
    });
    let failed: Vec<_> =
        answers.iter().filter(|(index, answer)| answer.as_deref() != Ok(&prompts[*index])).collect();
    assert!(failed.is_empty(), "{} of {} failed, first {:?}", failed.len(), answers.len(), failed.first());
    assert_eq!(ollama.generate_requests().len(), count, "no relay fell back to a backend call of its own");
    assert!(
        shared_flights(&relay, "relayed") >= (count as u64) * 9 / 10,
        "the relay followed the leader's flights"
    );
}

/// Asks each of `prompts` on `service` from a thread of its own (small
/// stacks: there are hundreds), streamed when the index's parity is `streamed`.
fn ask_each<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    service: &'scope Service,
    prompts: &'scope [String],
    streamed: usize,
) -> Vec<std::thread::ScopedJoinHandle<'scope, (usize, Result<String, String>)>> {
    (0..prompts.len())
        .map(|index| {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn_scoped(scope, move || (index, ask(service, &prompts[index], index % 2 == streamed)))
                .expect("a thread")
        })
        .collect()
}
