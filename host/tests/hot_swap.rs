//! Replacing the handler while it serves: the admin API, swap semantics,
//! refusals, rollback, auth and the compiled-component cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Reply, Service, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
const MISBEHAVE: &str = env!("LLM_SERVICE_TEST_PROGRAM_MISBEHAVE");
const SICK: &str = env!("LLM_SERVICE_TEST_PROGRAM_SICK");
const COMMAND: &str = env!("LLM_SERVICE_TEST_PROGRAM_COMMAND");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-hot-swap";

fn service(ollama: &FakeOllama) -> Service {
    Service::builder(BINARY).envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("ADMIN_TOKEN", TOKEN)]).start()
}

fn admin(service: &Service, method: &str, path: &str, body: &[u8]) -> Reply {
    service.admin(TOKEN, method, path, body)
}

fn push(service: &Service, path: &str) -> Reply {
    admin(service, "PUT", "/components/handler", &std::fs::read(path).unwrap())
}

fn version_tag(reply: &Reply) -> String {
    reply.header("x-handler-version").expect("X-Handler-Version").to_string()
}

#[test]
fn twenty_swaps_under_load_fail_no_request_and_take_effect_at_once() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let cached = json!({"prompt": "cached for the load"}).to_string();
    assert_eq!(service.generate(&serde_json::from_str(&cached).unwrap()).status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|index| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            let (health, generate, body) = (service.url("/health"), service.url("/generate"), cached.clone());
            std::thread::spawn(move || {
                let client = Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let ok = if index % 2 == 0 {
                        client.try_get(&health).is_ok_and(|reply| reply.status == 200)
                    } else {
                        client.send("POST", &generate, body.as_bytes()).status == 200
                    };
                    let counter = if ok { &served } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    for swap in 0..20 {
        let component = if swap % 2 == 0 { MISBEHAVE } else { HANDLER };
        let pushed = push(&service, component);
        assert_eq!(pushed.status, 200, "swap {swap}: {}", pushed.body);
        let sha256 = pushed.json()["sha256"].as_str().unwrap().to_string();
        let after = Client::new().get(&service.url("/health"));
        assert_eq!(
            version_tag(&after),
            sha256[..12],
            "swap {swap}: the next request runs on the new version"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during 20 swaps");
    assert!(served.load(Ordering::Relaxed) > 20, "load kept flowing: {}", served.load(Ordering::Relaxed));
    let components = admin(&service, "GET", "/components", b"").json();
    assert_eq!(components["active"]["version"], 21);
    assert_eq!(components["previous"].as_array().unwrap().len(), 5, "KEEP_VERSIONS");
}

#[test]
fn a_stream_started_before_a_swap_finishes_on_the_old_version() {
    let ollama = FakeOllama::start(&[MODEL]);
    ollama.set_token_delay(Duration::from_millis(100));
    let service = service(&ollama);
    let old = version_tag(&Client::new().get(&service.url("/health")));
    let streaming = {
        let url = service.url("/generate");
        let body = json!({"prompt": "one two three four five six seven eight", "stream": true}).to_string();
        std::thread::spawn(move || Client::new().send("POST", &url, body.as_bytes()))
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while ollama.open_generations() == 0 {
        assert!(std::time::Instant::now() < until, "the stream never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(push(&service, MISBEHAVE).status, 200);
    assert_ne!(version_tag(&Client::new().get(&service.url("/health"))), old);
    let reply = streaming.join().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(version_tag(&reply), old);
    let last: Value = serde_json::from_str(reply.body.lines().last().unwrap()).unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["response"], "one two three four five six seven eight");
}

#[test]
fn invalid_uploads_are_refused_with_the_reason_and_the_old_version_keeps_serving() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let before = version_tag(&Client::new().get(&service.url("/health")));

    let garbage = admin(&service, "PUT", "/components/handler", b"this is not wasm");
    assert_eq!(garbage.status, 422);
    let said = garbage.json()["error"].as_str().unwrap().to_string();
    assert!(said.contains("does not compile") && said.contains("not a WebAssembly file"), "{said}");
    assert!(!said.contains('['), "no byte arrays: {said}");

    let wrong_world = push(&service, COMMAND);
    assert_eq!(wrong_world.status, 422);
    let reason = wrong_world.json()["error"].as_str().unwrap().to_string();
    assert!(reason.contains("not a handler") && reason.contains("incoming-handler"), "{reason}");

    let sick = push(&service, SICK);
    assert_eq!(sick.status, 422);
    assert!(sick.json()["error"].as_str().unwrap().contains("smoke check failed"), "{}", sick.body);

    let after = Client::new().get(&service.url("/health"));
    assert_eq!((after.status, version_tag(&after)), (200, before));
    let components = admin(&service, "GET", "/components", b"").json();
    assert_eq!(components["active"]["version"], 1);
    assert!(components["previous"].as_array().unwrap().is_empty());
}

#[test]
fn rollback_returns_to_the_previous_or_the_named_version() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let original = version_tag(&Client::new().get(&service.url("/health")));
    assert_eq!(
        admin(&service, "POST", "/components/handler/rollback", b"").status,
        409,
        "nothing to roll back to"
    );
    let misbehave = push(&service, MISBEHAVE).json()["sha256"].as_str().unwrap().to_string();

    let rolled = admin(&service, "POST", "/components/handler/rollback", b"");
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    assert_eq!(version_tag(&Client::new().get(&service.url("/health"))), original);

    let named = admin(
        &service,
        "POST",
        "/components/handler/rollback",
        json!({"sha256": &misbehave[..16]}).to_string().as_bytes(),
    );
    assert_eq!(named.json()["sha256"], misbehave);
    assert_eq!(Client::new().get(&service.url("/health")).body, "/health", "misbehave answers again");
    let unknown = admin(&service, "POST", "/components/handler/rollback", br#"{"sha256": "ffff"}"#);
    assert_eq!(unknown.status, 404);
}

#[test]
fn admin_calls_need_the_token() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let client = Client::new();
    let missing = client.get(&service.admin_url("/components"));
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = client.send_with_headers(
        "GET",
        &service.admin_url("/components"),
        &[("authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    // A small body: the API answers 401 before reading an upload, and a
    // large one could still be in flight when it closes the connection.
    let unauthorized_push =
        client.send("PUT", &service.admin_url("/components/handler"), b"\0asm\x0d\0\x01\0");
    assert_eq!(unauthorized_push.status, 401);
    assert_ne!(Client::new().get(&service.url("/health")).body, "/health", "nothing was swapped");

    let off = Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).start();
    off.wait_for_log(Duration::from_secs(5), |line| {
        line["message"] == "admin API off: ADMIN_TOKEN is not set"
    });
}

#[test]
fn a_restart_with_a_warm_compiled_cache_does_not_compile() {
    let ollama = FakeOllama::start(&[MODEL]);
    let cache_dir = fresh_directory();
    let cache_dir = cache_dir.to_str().unwrap();
    let start = || {
        Service::builder(BINARY)
            .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("COMPILED_CACHE_DIR", cache_dir)])
            .start()
    };
    let listening = |service: &Service| {
        service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "llm-service listening")
    };
    let cold = start();
    assert_eq!(listening(&cold)["compiled_from_cache"], false);
    drop(cold);
    let warm = start();
    let line = listening(&warm);
    assert_eq!(line["compiled_from_cache"], true, "{line}");
    assert_eq!(line["compile_ms"], 0);
    assert_eq!(Client::new().get(&warm.url("/health")).status, 200);
}

/// The sha256 the start-up line names.
fn started_sha256(service: &Service) -> (String, bool) {
    let line =
        service.wait_for_log(Duration::from_secs(5), |line| line["message"] == "llm-service listening");
    (line["sha256"].as_str().unwrap().to_string(), line["compiled_from_cache"].as_bool().unwrap())
}

#[test]
fn a_compiled_file_planted_under_the_handlers_name_never_runs() {
    let ollama = FakeOllama::start(&[MODEL]);
    let cache_dir = fresh_directory();
    let start = |component: Option<&str>| {
        let mut builder = Service::builder(BINARY).envs(&[
            ("OLLAMA_BASE_URL", ollama.url().as_str()),
            ("COMPILED_CACHE_DIR", cache_dir.to_str().unwrap()),
        ]);
        if let Some(component) = component {
            builder = builder.component(component);
        }
        builder.start()
    };
    // Both compiled and sealed into the cache, as the service would.
    let (builtin, _) = started_sha256(&start(None));
    let (other, _) = started_sha256(&start(Some(MISBEHAVE)));
    // Another component's compiled file (and its seal) under the handler's name.
    for suffix in ["cwasm", "cwasm.seal"] {
        std::fs::copy(
            cache_dir.join(format!("{other}.{suffix}")),
            cache_dir.join(format!("{builtin}.{suffix}")),
        )
        .unwrap();
    }
    let service = start(None);
    let (sha256, from_cache) = started_sha256(&service);
    assert_eq!(
        (sha256.as_str(), from_cache),
        (builtin.as_str(), false),
        "compiled anew, not the planted file"
    );
    let health = Client::new().get(&service.url("/health"));
    assert_eq!(health.json()["service"], "llm-service", "the built-in handler answers: {}", health.body);
    let warned = service
        .logs()
        .iter()
        .any(|line| line["message"].as_str().unwrap_or("").contains("seal does not verify"));
    assert!(warned, "the refusal is logged");
}

#[test]
fn a_compiled_cache_directory_others_may_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let ollama = FakeOllama::start(&[MODEL]);
    let cache_dir = fresh_directory();
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let start = || {
        Service::builder(BINARY)
            .envs(&[
                ("OLLAMA_BASE_URL", ollama.url().as_str()),
                ("COMPILED_CACHE_DIR", cache_dir.to_str().unwrap()),
            ])
            .start()
    };
    drop(start());
    let service = start();
    assert!(!started_sha256(&service).1, "nothing is read from an unsafe directory");
    let refused =
        service.logs().iter().any(|line| line["error"].as_str().unwrap_or("").contains("mode 0700"));
    assert!(refused, "{:?}", service.logs());
}

#[test]
fn the_component_cli_pushes_lists_and_rolls_back() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let admin_url = service.admin_url("");
    let cli = |args: &[&str], token: &str| {
        std::process::Command::new(BINARY)
            .arg("component")
            .args(args)
            .env("ADMIN_URL", &admin_url)
            .env("ADMIN_TOKEN", token)
            .env("OLLAMA_BASE_URL", ollama.url())
            .output()
            .unwrap()
    };
    let pushed = cli(&["push", MISBEHAVE], TOKEN);
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let pushed: Value = serde_json::from_slice(&pushed.stdout).unwrap();
    assert_eq!(pushed["version"], 2);
    assert_eq!(Client::new().get(&service.url("/health")).body, "/health");

    let listed: Value = serde_json::from_slice(&cli(&["list"], TOKEN).stdout).unwrap();
    assert_eq!(listed["active"]["sha256"], pushed["sha256"]);
    assert_eq!(listed["previous"][0]["version"], 1);

    assert!(cli(&["rollback"], TOKEN).status.success());
    assert_ne!(Client::new().get(&service.url("/health")).body, "/health");

    let refused = cli(&["list"], "wrong-token-wrong-token");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}

#[test]
fn watch_mode_installs_a_changed_handler_and_refuses_a_broken_one() {
    let ollama = FakeOllama::start(&[MODEL]);
    let dir = fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    let service = Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("COMPONENTS_DIR", dir.to_str().unwrap())])
        .start();
    service.wait_for_log(Duration::from_secs(5), |line| {
        line["message"].as_str().unwrap_or("").starts_with("watching")
    });
    let original = version_tag(&Client::new().get(&service.url("/health")));

    std::fs::write(dir.join("handler.wasm"), b"\0asm broken on purpose").unwrap();
    service.wait_for_log(Duration::from_secs(10), |line| {
        line["message"] == "watched handler refused; the serving version stays"
    });
    assert_eq!(version_tag(&Client::new().get(&service.url("/health"))), original);

    std::fs::copy(MISBEHAVE, dir.join("handler.wasm.partial")).unwrap();
    std::fs::rename(dir.join("handler.wasm.partial"), dir.join("handler.wasm")).unwrap();
    service.wait_for_log(Duration::from_secs(10), |line| line["message"] == "watched handler installed");
    assert_eq!(Client::new().get(&service.url("/health")).body, "/health", "misbehave serves now");
}

#[test]
fn the_current_model_outlives_a_handler_swap() {
    let ollama = FakeOllama::start(&[MODEL, "other:1b"]);
    let service = service(&ollama);
    let switched = Client::new().send("POST", &service.url("/model"), br#"{"model": "other:1b"}"#);
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(push(&service, MISBEHAVE).status, 200);
    assert_eq!(push(&service, HANDLER).status, 200);
    assert_eq!(
        Client::new().get(&service.url("/health")).json()["model"],
        "other:1b",
        "the model is the host's state"
    );
}
