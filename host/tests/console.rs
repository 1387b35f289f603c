//! The operator console in a real browser: Debian's headless Chromium,
//! driven by playwright-core from the npm registry
//! (`tests/console/console.test.mjs`; scripts/test.sh installs both), against
//! the real binary, a fake Ollama and a redis-server (so the page lists its
//! replica), with client keys optional (so it makes, lists and revokes one).
//! Plus what a browser does not show: the
//! page's headers, that its data needs the token, and the `/service/...` and
//! `/stats` endpoints it is built on.

use std::path::PathBuf;
use std::process::Command;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::redis_server::RedisServer;
use llm_service_test_support::{Client, Service, component_variant, fresh_directory};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const HANDLER: &str = env!("LLM_SERVICE_HANDLER_WASM");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-console-tests";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn service(ollama: &FakeOllama) -> Service {
    Service::builder(BINARY)
        .envs(&[("OLLAMA_BASE_URL", &ollama.url()), ("OLLAMA_MODEL", MODEL), ("ADMIN_TOKEN", TOKEN)])
        .start()
}

#[test]
fn the_console_shows_versions_and_charts_pushes_rolls_back_and_refuses_a_wrong_token() {
    let chromium = std::env::var_os("LLM_SERVICE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.exists(),
        "{} is missing: install Debian's chromium (scripts/test.sh does)",
        chromium.display()
    );
    let tests = repo().join("tests/console");
    assert!(
        tests.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/console (scripts/test.sh does)"
    );
    let ollama = FakeOllama::start(&[MODEL]);
    // A shared store, so the page has a replica to list.
    let redis = RedisServer::start();
    let dir = fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    let service = Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("OLLAMA_MODEL", MODEL),
            ("ADMIN_TOKEN", TOKEN),
            ("REDIS_URL", &redis.url()),
            ("CLIENT_KEYS", "optional"),
            ("CLIENT_KEYS_FILE", &dir.join("keys.json").display().to_string()),
        ])
        .start();
    let broken = dir.join("not-a-plugin.wasm");
    std::fs::write(&broken, b"\0asm but not really").unwrap();
    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&screenshot);

    let output = Command::new("node")
        .arg("console.test.mjs")
        .current_dir(&tests)
        .env("CONSOLE_URL", service.admin_url(""))
        .env("PUBLIC_URL", service.url(""))
        .env("ADMIN_TOKEN", TOKEN)
        .env("SECOND_HANDLER", component_variant(HANDLER, &dir, "second-version"))
        .env("BROKEN_UPLOAD", &broken)
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let first = seen["first"].as_str().unwrap();
    assert_eq!(seen["afterRollback"], first[..12], "{seen}");
    assert_ne!(seen["afterPush"], first, "{seen}");
    assert!(seen["chartPoints"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(seen["replicaRows"], 1, "one replica shares the store: {seen}");
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    assert!(seen["refusal"].as_str().unwrap().contains("422"), "{seen}");
    // Confirmations: push, rollback (dismissed), rollback, canary, drop, clear.
    assert_eq!(seen["dialogs"].as_array().unwrap().len(), 6, "{seen}");
    assert!(seen["canary"].as_str().unwrap().contains("30% of requests"), "{seen}");
    assert_eq!(seen["keyRow"][1], "team-console", "the key made in the page is listed: {seen}");
    assert_eq!(seen["afterRevoke"], 401, "the key revoked in the page is refused: {seen}");
    assert_eq!(seen["keyDialogs"].as_array().unwrap().len(), 1, "revoking asks first: {seen}");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "a real screenshot");
    // And from outside the browser: the rollback holds.
    let health = Client::new().get(&service.url("/health"));
    assert_eq!(health.header("x-handler-version"), Some(&first[..12]));
}

#[test]
fn the_charts_arithmetic_passes_its_node_tests() {
    let output = Command::new("node")
        .args(["--test", "charts.test.mjs"])
        .current_dir(repo().join("tests/console"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("# pass 3"), "every test ran: {stdout}");
}

#[test]
fn the_page_needs_no_token_but_its_data_does_and_it_carries_a_strict_policy() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let client = Client::new();
    let page = client.get(&service.admin_url("/console/"));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>llm-service console</title>"));
    let policy = page.header("content-security-policy").expect("a policy");
    assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let root = client.get(&service.admin_url("/"));
    assert!(root.body.contains("<title>llm-service console</title>"), "/ leads to the console");
    for path in ["/stats", "/service/health", "/components"] {
        assert_eq!(client.get(&service.admin_url(path)).status, 401, "{path} needs the token");
    }
}

#[test]
fn the_admin_listener_reaches_the_public_endpoints_in_process_and_counts_traffic() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = service(&ollama);
    let admin = |method: &str, path: &str, body: &[u8]| service.admin(TOKEN, method, path, body);
    let before = admin("GET", "/stats", b"").json();
    for _ in 0..3 {
        assert_eq!(service.generate(&json!({"prompt": "counted"})).status, 200);
    }
    let health = admin("GET", "/service/health", b"");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["model"], MODEL);
    assert!(health.header("x-handler-version").is_some(), "the handler answered");
    let cleared = admin("POST", "/service/cache/clear", br#"{"character": "peter"}"#);
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(admin("POST", "/service/model", br#"{"model": "missing:1b"}"#).status, 404);
    assert_eq!(admin("GET", "/service/nowhere", b"").status, 404, "the handler's own 404");

    let after = admin("GET", "/stats", b"").json();
    let delta = |field: &str| after[field].as_u64().unwrap() - before[field].as_u64().unwrap();
    assert_eq!(delta("requests_total"), 3, "the public requests, not the admin's: {after}");
    assert_eq!((delta("cache_misses"), delta("cache_hits")), (1, 2), "{after}");
    let buckets = after["latency_buckets"].as_array().unwrap();
    assert_eq!(buckets.last().unwrap(), &json!({"le_s": null, "count": after["requests_total"]}));
    assert!(after["uptime_s"].as_f64().unwrap() > before["uptime_s"].as_f64().unwrap());
    assert_eq!(after["generations_queued"], 0);
}
