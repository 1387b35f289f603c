//! Prompt plugins: what they change reaches the backend and the cache key,
//! they reload without a restart, and a failing one fails only its own
//! requests, naming itself.

use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Reply, Service, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const PETER: &str = env!("LLM_SERVICE_PLUGIN_PETER");
const TIDY: &str = env!("LLM_SERVICE_PLUGIN_TIDY");
const PETER_V2: &str = env!("LLM_SERVICE_TEST_PROGRAM_PLUGIN_PETER_V2");
const FAULTY: &str = env!("LLM_SERVICE_TEST_PROGRAM_PLUGIN_FAULTY");
const OUTBOUND: &str = env!("LLM_SERVICE_TEST_PROGRAM_PLUGIN_OUTBOUND");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "plugin-admin-token";
const RELOAD_DEADLINE: Duration = Duration::from_secs(20);

/// A service with admin on, watching a fresh PLUGINS_DIR holding `files`.
fn service_with_plugins(
    ollama: &FakeOllama,
    files: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (Service, std::path::PathBuf) {
    let dir = fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, source) in files {
        std::fs::copy(source, dir.join(name)).unwrap();
    }
    let service = Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("ADMIN_TOKEN", TOKEN),
            ("PLUGINS_DIR", dir.to_str().unwrap()),
        ])
        .envs(extra)
        .start();
    (service, dir)
}

fn admin(service: &Service, method: &str, path: &str, body: &[u8]) -> Reply {
    service.admin(TOKEN, method, path, body)
}

fn push(service: &Service, path: &str) -> Reply {
    admin(service, "PUT", "/plugins", &std::fs::read(path).unwrap())
}

fn sha256_of(path: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn last_generation(ollama: &FakeOllama) -> Value {
    ollama.generate_requests().pop().expect("the backend got a generation")
}

fn wait_for_plugin(service: &Service, sha256: &str) {
    service.wait_for_log(RELOAD_DEADLINE, |line| {
        line["message"] == "plugin now serving" && line["sha256"].as_str() == Some(sha256)
    });
}

#[test]
fn peter_reaches_the_backend_with_the_plugins_system_prompt_and_options() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(&ollama, &[("peter.wasm", PETER)], &[]);

    let reply = service.generate(&json!({"prompt": "How is the sea today?", "character_name": "peter"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = last_generation(&ollama);
    assert!(sent["system"].as_str().is_some_and(|system| system.starts_with("You are Peter")), "{sent}");
    assert_eq!(sent["options"]["temperature"], 0.7);
    assert_eq!(sent["options"]["stop"], json!(["Human:", "Assistant:", "\n\n\n", "Peter:"]));
    assert_eq!(sent["prompt"], "How is the sea today?");

    let other = service.generate(&json!({"prompt": "How is the sea today?", "character_name": "lois"}));
    assert_eq!(other.status, 200, "{}", other.body);
    let sent = last_generation(&ollama);
    assert!(sent.get("system").is_none(), "a character without a plugin passes through: {sent}");
    assert_eq!(sent["options"]["temperature"], 0.8);
}

#[test]
fn a_character_named_by_header_gets_its_plugin_in_the_ollama_and_openai_dialects() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(&ollama, &[("peter.wasm", PETER)], &[]);
    let chat = json!({"model": MODEL, "stream": false, "messages": [{"role": "user", "content": "How is the sea?"}]});
    let reply = Client::new().send_with_headers(
        "POST",
        &service.url("/api/chat"),
        &[("x-character", "peter")],
        chat.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = ollama.chat_requests().pop().unwrap();
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert!(sent["messages"][0]["content"].as_str().unwrap().starts_with("You are Peter"), "{sent}");
    assert_eq!(sent["messages"][1]["content"], "How is the sea?");

    // The seed's field works in the OpenAI dialect; no character, no plugin.
    let openai =
        json!({"model": MODEL, "character_name": "peter", "messages": [{"role": "user", "content": "Hi?"}]});
    let reply =
        Client::new().send("POST", &service.url("/v1/chat/completions"), openai.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(ollama.chat_requests().pop().unwrap()["messages"][0]["role"], "system");
    let plain = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi?"}]});
    let reply =
        Client::new().send("POST", &service.url("/v1/chat/completions"), plain.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        ollama.chat_requests().pop().unwrap()["messages"][0]["role"],
        "user",
        "no plugin without a character"
    );
}

#[test]
fn the_post_processor_cuts_echoes_and_the_unfinished_sentence() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(&ollama, &[], &[]);
    let pushed = push(&service, TIDY);
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    assert_eq!(pushed.json()["characters"], json!(["narrator"]));

    // The fake model echoes the prompt, echoes and all.
    let prompt = "Assistant: Hello there. How are you? Human: fine thanks and you";
    let tidy = service.generate(&json!({"prompt": prompt, "character_name": "narrator"}));
    assert_eq!(tidy.status, 200, "{}", tidy.body);
    assert_eq!(tidy.json()["response"], "Hello there. How are you?");
    let cached = service.generate(&json!({"prompt": prompt, "character_name": "narrator"}));
    assert_eq!(
        (cached.header("x-cache"), cached.json()["response"].clone()),
        (Some("HIT"), json!("Hello there. How are you?"))
    );

    let untouched = service.generate(&json!({"prompt": prompt, "character_name": "somebody"}));
    assert_eq!(untouched.json()["response"], prompt);

    let streamed = Client::new().send(
        "POST",
        &service.url("/generate"),
        json!({"prompt": prompt, "character_name": "narrator", "use_cache": false, "stream": true})
            .to_string()
            .as_bytes(),
    );
    let last: Value = serde_json::from_str(streamed.body.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["done"].clone(), last["response"].clone()),
        (json!(true), json!("Hello there. How are you?"))
    );
}

#[test]
fn a_new_plugin_version_in_the_directory_changes_behaviour_and_the_cache_key() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, dir) = service_with_plugins(&ollama, &[("peter.wasm", PETER)], &[]);
    let request = json!({"prompt": "Tell me about storms", "character_name": "peter"});

    assert_eq!(service.generate(&request).header("x-cache"), Some("MISS"));
    assert_eq!(service.generate(&request).header("x-cache"), Some("HIT"));
    assert_eq!(ollama.generate_hits(), 1);

    // Written the way deploy tools do: a temporary name, then a rename.
    std::fs::copy(PETER_V2, dir.join("peter.wasm.part")).unwrap();
    std::fs::rename(dir.join("peter.wasm.part"), dir.join("peter.wasm")).unwrap();
    wait_for_plugin(&service, &sha256_of(PETER_V2));

    let after = service.generate(&request);
    assert_eq!(after.header("x-cache"), Some("MISS"), "the old version's answer is not served");
    assert_eq!(ollama.generate_hits(), 2);
    let sent = last_generation(&ollama);
    assert_eq!(sent["system"], "You are Peter, version two: a ship's cook.");
    assert_eq!(sent["options"]["temperature"], 0.3);

    // Back to version 1: its own answers are still cached.
    std::fs::copy(PETER, dir.join("peter.wasm")).unwrap();
    wait_for_plugin(&service, &sha256_of(PETER));
    assert_eq!(service.generate(&request).header("x-cache"), Some("HIT"));
    assert_eq!(ollama.generate_hits(), 2);

    // Deleting the file unloads what it loaded; peter passes through again.
    std::fs::remove_file(dir.join("peter.wasm")).unwrap();
    service.wait_for_log(RELOAD_DEADLINE, |line| line["message"] == "plugin removed");
    service.generate(&json!({"prompt": "Unplugged now", "character_name": "peter"}));
    assert!(last_generation(&ollama).get("system").is_none());
}

#[test]
fn a_failing_plugin_fails_only_its_requests_with_502_naming_it() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(
        &ollama,
        &[("faulty.wasm", FAULTY), ("peter.wasm", PETER)],
        &[("PLUGIN_TIMEOUT_MS", "300"), ("PLUGIN_MAX_MEMORY", "8388608")],
    );
    let faulty = |prompt: &str| json!({"prompt": prompt, "character_name": "faulty", "use_cache": false});

    let bystanders = std::thread::spawn({
        let url = service.url("/generate");
        move || {
            let client = Client::new();
            (0..20)
                .map(|index| {
                    let body = json!({"prompt": format!("bystander {index}"), "character_name": "peter"});
                    client.send("POST", &url, body.to_string().as_bytes()).status
                })
                .collect::<Vec<u16>>()
        }
    });
    for (prompt, reason) in [
        ("trap", "faulty plugin asked to trap"),
        ("loop", "did not finish within 300ms"),
        ("sleep", "did not finish within 300ms"),
        ("hog", "trapped"),
        ("bad-settings", "settings.temperature must be between 0 and 2"),
    ] {
        let reply = service.generate(&faulty(prompt));
        assert_eq!(reply.status, 502, "{prompt}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["plugin"], "faulty", "{prompt}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with("plugin 'faulty' failed:") && error.contains(reason), "{prompt}: {error}");
    }
    let refused = service.generate(&faulty("refuse"));
    assert_eq!((refused.status, refused.json()["plugin"].clone()), (422, json!("faulty")));
    assert!(refused.json()["error"].as_str().unwrap().contains("faulty does not talk about that"));

    assert!(bystanders.join().unwrap().iter().all(|status| *status == 200));
    let fine = service.generate(&faulty("hello"));
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert_eq!(last_generation(&ollama)["system"], "faulty sees: hello");
    let metrics = Client::new().get(&service.url("/metrics")).json();
    assert_eq!(metrics["errors"]["plugin_failed"], 5, "{metrics}");
}

#[test]
fn a_plugin_that_imports_outbound_http_is_refused() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, dir) = service_with_plugins(&ollama, &[], &[]);
    let pushed = push(&service, OUTBOUND);
    assert_eq!(pushed.status, 422, "{}", pushed.body);
    let error = pushed.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("imports instance `wasi:http/") && error.contains("not a prompt plugin"),
        "{error}"
    );

    std::fs::copy(OUTBOUND, dir.join("outbound.wasm")).unwrap();
    service
        .wait_for_log(RELOAD_DEADLINE, |line| line["message"] == "watched plugin refused; what served stays");
    let reply = service.generate(&json!({"prompt": "call home", "character_name": "outbound"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(last_generation(&ollama).get("system").is_none());
    assert_eq!(admin(&service, "GET", "/plugins", b"").json()["plugins"], json!([]));
}

#[test]
fn plugins_are_pushed_listed_and_removed_from_the_command_line() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(&ollama, &[], &[]);
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(BINARY)
            .arg("plugin")
            .args(args)
            .env("ADMIN_URL", service.admin_url(""))
            .env("ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };

    let (code, stdout, stderr) = cli(&["push", PETER]);
    assert_eq!(code, Some(0), "{stderr}");
    let pushed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((pushed["name"].clone(), pushed["sha256"].clone()), (json!("peter"), json!(sha256_of(PETER))));

    let (_, stdout, _) = cli(&["list"]);
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed["plugins"][0]["characters"], json!(["peter"]));

    service.generate(&json!({"prompt": "ahoy", "character_name": "peter"}));
    assert!(last_generation(&ollama)["system"].is_string());

    let (code, _, _) = cli(&["remove", "peter"]);
    assert_eq!(code, Some(0));
    let (code, _, stderr) = cli(&["remove", "peter"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("404") && stderr.contains("no plugin named 'peter'"), "{stderr}");
    service.generate(&json!({"prompt": "ahoy again", "character_name": "peter"}));
    assert!(last_generation(&ollama).get("system").is_none());

    let unauthorized = Client::new().send("PUT", &service.admin_url("/plugins"), b"not wasm");
    assert_eq!(unauthorized.status, 401);
    let wrong_world = admin(&service, "PUT", "/plugins", b"\0asm not really");
    assert_eq!(wrong_world.status, 422);
}

#[test]
fn a_plugin_replaces_its_namesake_and_never_takes_anothers_character() {
    let ollama = FakeOllama::start(&[MODEL]);
    let (service, _dir) = service_with_plugins(&ollama, &[("peter.wasm", PETER)], &[]);
    // Same name: a new version replaces the old.
    let replaced = push(&service, PETER_V2);
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["replaced"], sha256_of(PETER));
    let listed = admin(&service, "GET", "/plugins", b"").json();
    assert_eq!(listed["plugins"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["plugins"][0]["sha256"], sha256_of(PETER_V2));

    // Another name for a character that is served: refused, naming both.
    assert_eq!(push(&service, FAULTY).status, 200);
    let conflict = push(&service, TIDY);
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    let error = conflict.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("'narrator' is already served by plugin 'faulty'"), "{error}");
    let names: Vec<Value> = admin(&service, "GET", "/plugins", b"").json()["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|plugin| plugin["name"].clone())
        .collect();
    assert_eq!(names, [json!("faulty"), json!("peter")]);
}
