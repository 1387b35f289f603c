//! Client keys and tenants against the real binary: keys made and revoked
//! through the admin API and the CLI, refusals in each dialect's own
//! shape (and as the official openai, anthropic and ollama clients raise
//! them), tenants' caches
//! kept apart, and keys that survive a restart.

use std::path::Path;
use std::process::Command;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::keys::{self, bearer, post};
use llm_service_test_support::{Client, Service, clients, fresh_directory};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "let-me-in-key-tests";

fn keyed(ollama: &FakeOllama, mode: &str, file: &Path) -> Service {
    Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("OLLAMA_MODEL", MODEL),
            ("ADMIN_TOKEN", TOKEN),
            ("CLIENT_KEYS", mode),
            ("CLIENT_KEYS_FILE", &file.display().to_string()),
        ])
        .start()
}

/// Makes a key through the admin API: its record, with its secret.
fn create(service: &Service, spec: &Value) -> Value {
    keys::create(service, TOKEN, spec)
}

#[test]
fn required_keys_refuse_in_each_dialects_shape_and_admit_a_valid_one() {
    let (ollama, file) = (FakeOllama::start(&[MODEL]), fresh_directory().join("keys.json"));
    let service = keyed(&ollama, "required", &file);
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let anthropic =
        json!({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});

    let seed = post(&service, "/generate", &[], &json!({"prompt": "no key"}));
    assert_eq!(seed.status, 401, "{}", seed.body);
    assert!(seed.json()["error"].as_str().unwrap().contains("needs a client key"), "{}", seed.body);
    assert_eq!(seed.header("www-authenticate"), Some("Bearer"));
    let ollama_chat = post(&service, "/api/chat", &[("authorization", "Bearer lls-wrong")], &chat);
    assert_eq!(
        (ollama_chat.status, ollama_chat.json()["error"].clone()),
        (401, json!("the client key is not valid"))
    );
    let openai = post(&service, "/v1/chat/completions", &[("authorization", "Bearer lls-wrong")], &chat);
    assert_eq!(openai.status, 401);
    assert_eq!(openai.json()["error"]["code"], "invalid_api_key", "{}", openai.body);
    let claude = post(&service, "/v1/messages", &[("x-api-key", "lls-wrong")], &anthropic);
    assert_eq!(claude.status, 401);
    assert_eq!(claude.json()["type"], "error");
    assert_eq!(claude.json()["error"]["type"], "authentication_error", "{}", claude.body);
    assert_eq!(ollama.generate_hits(), 0, "no refused request reached the backend");
    assert_eq!(Client::new().get(&service.url("/health")).status, 200, "/health needs no key");

    let key = create(&service, &json!({"tenant": "team-a", "models": [MODEL]}));
    let secret = key["secret"].as_str().unwrap();
    let admitted =
        post(&service, "/generate", &[("authorization", &bearer(secret))], &json!({"prompt": "with a key"}));
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    let line =
        service.wait_for_log(std::time::Duration::from_secs(10), |line| line["message"] == "LLM Request");
    assert_eq!(
        (line["tenant"].as_str(), line["key_id"].as_str()),
        (Some("team-a"), key["id"].as_str()),
        "{line}"
    );
    assert!(
        !service.logs().iter().any(|line| line.to_string().contains(secret)),
        "the secret is never logged"
    );

    let other_model = json!({"model": "other:1b", "messages": [{"role": "user", "content": "hi"}]});
    let forbidden =
        post(&service, "/v1/chat/completions", &[("authorization", &bearer(secret))], &other_model);
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    assert_eq!(forbidden.json()["error"]["type"], "permission_error");

    let revoked = service.admin(TOKEN, "DELETE", &format!("/keys/{}", key["id"].as_str().unwrap()), b"");
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let refused = post(&service, "/generate", &[("x-api-key", secret)], &json!({"prompt": "after revoking"}));
    assert_eq!(refused.status, 401);
    assert!(refused.json()["error"].as_str().unwrap().contains("was revoked"), "{}", refused.body);
    let listed = service.admin(TOKEN, "GET", "/keys", b"").json();
    assert_eq!(listed["mode"], "required");
    assert!(listed["keys"][0]["revoked_at"].is_u64(), "{listed}");
    assert!(!listed.to_string().contains(secret), "a list never shows a secret");
    let refused = |reason: &str| metric(&service, "llm_service_key_refusals_total", &[("reason", reason)]);
    assert_eq!((refused("key_missing"), refused("key_unknown")), (1, 3));
    assert_eq!((refused("model_not_allowed"), refused("key_revoked")), (1, 1));
}

#[test]
fn the_official_clients_raise_their_own_errors_and_a_valid_key_is_answered() {
    let (ollama, file) = (FakeOllama::start(&[MODEL, "other:1b"]), fresh_directory().join("keys.json"));
    let service = keyed(&ollama, "required", &file);
    let key = create(&service, &json!({"tenant": "sdk-team", "models": [MODEL]}));
    let spent = keys::secret(&service, TOKEN, &json!({"tenant": "sdk-team", "limits": {"rpm": 1}}));
    let first = post(&service, "/generate", &[("x-api-key", &spent)], &json!({"prompt": "the one a minute"}));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("0"), "{:?}", first.headers);
    let url = service.url("");
    let seen = clients::python(
        "keys_client.py",
        &[&url, MODEL, key["secret"].as_str().unwrap(), "other:1b", &spent],
    );
    assert_eq!(seen["openai_wrong"], 401, "{seen}");
    assert_eq!(seen["openai_other_model"], 403, "{seen}");
    assert_eq!(seen["anthropic_wrong"], 401, "{seen}");
    assert_eq!(seen["ollama_missing"], 401, "{seen}");
    assert_eq!(
        (&seen["openai_limited"], &seen["anthropic_limited"], &seen["ollama_limited"]),
        (&json!(429), &json!(429), &json!(429)),
        "{seen}"
    );
    assert_eq!(seen["openai_limited_code"], "rate_limit_exceeded", "{seen}");
    let retry_after: u64 = seen["openai_retry_after"].as_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{seen}");
    for answered in ["openai_answer", "anthropic_answer", "ollama_answer"] {
        assert!(seen[answered].as_str().is_some_and(|text| !text.is_empty()), "{answered}: {seen}");
    }
}

#[test]
fn one_tenants_cached_answer_is_never_anothers_and_shared_namespaces_share() {
    let (ollama, file) = (FakeOllama::start(&[MODEL]), fresh_directory().join("keys.json"));
    let service = keyed(&ollama, "optional", &file);
    let a = create(&service, &json!({"tenant": "team-a"}))["secret"].as_str().unwrap().to_string();
    let b = create(&service, &json!({"tenant": "team-b"}))["secret"].as_str().unwrap().to_string();
    let bots = create(&service, &json!({"tenant": "bots-2", "cache_namespace": "team-a"}))["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let ask = |secret: Option<&str>| {
        let header = secret.map(bearer);
        let headers: Vec<(&str, &str)> =
            header.iter().map(|value| ("authorization", value.as_str())).collect();
        let reply =
            post(&service, "/generate", &headers, &json!({"prompt": "the same question", "use_cache": true}));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.header("x-cache").unwrap_or_default().to_string()
    };
    assert_eq!(ask(Some(&a)), "MISS");
    assert_eq!(ask(Some(&a)), "HIT", "a tenant's own repeat is a hit");
    assert_eq!(ask(Some(&b)), "MISS", "another tenant's answer is not served to team-b");
    assert_eq!(ask(None), "MISS", "nor to the default tenant");
    assert_eq!(ask(Some(&bots)), "HIT", "a tenant sharing team-a's namespace shares its answers");
    assert_eq!(ollama.generate_hits(), 3);
    let counted = |tenant: &str, cache: &str| {
        metric(&service, "llm_service_tenant_generations_total", &[("tenant", tenant), ("cache", cache)])
    };
    assert_eq!((counted("team-a", "miss"), counted("team-a", "hit")), (1, 1));
    assert_eq!((counted("team-b", "miss"), counted("team-b", "hit")), (1, 0));
    assert_eq!(counted("bots-2", "hit"), 1, "an edge replay counts for its tenant too");
}

fn metric(service: &Service, name: &str, labels: &[(&str, &str)]) -> u64 {
    keys::metric(service, TOKEN, name, labels)
}

#[test]
fn keys_made_with_the_cli_survive_a_restart_without_a_store() {
    let (ollama, file) = (FakeOllama::start(&[MODEL]), fresh_directory().join("keys.json"));
    let mut service = keyed(&ollama, "required", &file);
    let output = Command::new(BINARY)
        .args(["key", "create", "--tenant", "cli-team", "--models", &format!("{MODEL},other:1b")])
        .env("ADMIN_TOKEN", TOKEN)
        .env("ADMIN_URL", service.admin_url(""))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let made: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(made["models"], json!([MODEL, "other:1b"]));
    let secret = made["secret"].as_str().unwrap().to_string();
    service.terminate();
    service.wait_exit(std::time::Duration::from_secs(30));

    let service = keyed(&ollama, "required", &file);
    let reply = post(&service, "/generate", &[("x-api-key", &secret)], &json!({"prompt": "after a restart"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let listed = Command::new(BINARY)
        .args(["key", "list"])
        .env("ADMIN_TOKEN", TOKEN)
        .env("ADMIN_URL", service.admin_url(""))
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["keys"][0]["tenant"], "cli-team");
    let bad = service.admin(TOKEN, "POST", "/keys", br#"{"tenant": "no/slashes"}"#);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("tenant"), "{}", bad.body);
}

#[test]
fn limits_refuse_with_429_in_each_dialects_shape_and_tokens_count_once_generated() {
    let (ollama, file) = (FakeOllama::start(&[MODEL]), fresh_directory().join("keys.json"));
    let service = keyed(&ollama, "optional", &file);
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": false});
    let two = keys::secret(&service, TOKEN, &json!({"tenant": "team-r", "limits": {"rpm": 2}}));
    let with_two = [("authorization", bearer(&two))];
    let headers: Vec<(&str, &str)> = with_two.iter().map(|(name, value)| (*name, value.as_str())).collect();
    for (index, left) in ["1", "0"].iter().enumerate() {
        let reply = post(&service, "/generate", &headers, &json!({"prompt": format!("question {index}")}));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-ratelimit-limit-requests"), Some("2"));
        assert_eq!(reply.header("x-ratelimit-remaining-requests"), Some(*left));
    }
    let openai = post(&service, "/v1/chat/completions", &headers, &chat);
    assert_eq!(openai.status, 429, "{}", openai.body);
    assert_eq!(
        (openai.json()["error"]["type"].as_str(), openai.json()["error"]["code"].as_str()),
        (Some("requests"), Some("rate_limit_exceeded"))
    );
    let retry_after: u64 = openai.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        (openai.header("x-ratelimit-limit-requests"), openai.header("x-ratelimit-remaining-requests")),
        (Some("2"), Some("0")),
        "the 429 says which limit and that nothing is left: {:?}",
        openai.headers
    );
    assert_eq!(openai.header("x-ratelimit-reset-requests"), Some(format!("{retry_after}s").as_str()));
    let anthropic = json!({"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let claude = post(&service, "/v1/messages", &headers, &anthropic);
    assert_eq!((claude.status, claude.json()["error"]["type"].clone()), (429, json!("rate_limit_error")));
    let ollama_chat = post(&service, "/api/chat", &headers, &chat);
    assert_eq!(ollama_chat.status, 429);
    assert!(ollama_chat.json()["error"].as_str().unwrap().contains("rpm limit"), "{}", ollama_chat.body);
    assert_eq!(ollama.generate_hits(), 2, "a refused request never reaches the backend");
    let limited =
        metric(&service, "llm_service_tenant_limited_total", &[("tenant", "team-r"), ("limit", "rpm")]);
    assert_eq!(limited, 3);

    // Tokens count once generated: the request that crosses a limit is
    // answered, the next is refused.
    for (limits, limit, kind) in
        [(json!({"tpm": 1}), "tpm", "tokens"), (json!({"daily_tokens": 1}), "daily_tokens", "tokens")]
    {
        let key = create(&service, &json!({"tenant": "team-t", "limits": limits}));
        let headers = [("x-api-key", key["secret"].as_str().unwrap())];
        let first =
            post(&service, "/generate", &headers, &json!({"prompt": format!("tokens under {limit}")}));
        assert_eq!(first.status, 200, "{}", first.body);
        // The tokens are counted when the generation is reported.
        service.wait_for_log(std::time::Duration::from_secs(10), |line| {
            line["message"] == "LLM Request" && line["key_id"] == key["id"]
        });
        let refused = post(&service, "/v1/chat/completions", &headers, &chat);
        assert_eq!(refused.status, 429, "{limit}: {}", refused.body);
        assert_eq!(refused.json()["error"]["type"], kind);
        assert!(refused.json()["error"]["message"].as_str().unwrap().contains(limit), "{}", refused.body);
    }
    let bad = service.admin(TOKEN, "POST", "/keys", br#"{"tenant": "t", "limits": {"rpm": 0}}"#);
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().contains("rpm"), "{}", bad.body);
}
