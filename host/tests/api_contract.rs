//! The public API against its OpenAPI description (docs/openapi.json, served
//! at /openapi.json), and the admin API's client keys against theirs
//! (docs/admin-openapi.json, served at the admin port's /openapi.json):
//! schemathesis, from PyPI, sends generated requests to the live service
//! (a fast fake backend behind it) and checks that no answer is a server
//! error other than the documented 503/504, and that every status, content
//! type and body is the one documented.

use std::path::PathBuf;
use std::process::Command;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Client, Service};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
/// Examples per operation: enough to cross every validation branch, few
/// enough for the test command.
const EXAMPLES: &str = "40";
const ADMIN_TOKEN: &str = "let-me-in-contract";

/// The schemathesis beside the test python (scripts/python-env.sh installs it).
fn schemathesis() -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("LLM_SERVICE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    python.with_file_name("schemathesis")
}

#[test]
fn the_served_description_is_the_repositorys() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).start();
    let served = Client::new().get(&service.url("/openapi.json"));
    assert_eq!(served.status, 200);
    let kept: serde_json::Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    assert_eq!(served.json(), kept);
}

/// Runs schemathesis against the description at `description`, served at
/// `base`, with `extra` arguments; fails the test with its report.
fn conforms(description: &str, base: &str, extra: &[&str]) {
    let tool = schemathesis();
    assert!(tool.exists(), "{} is missing: run scripts/python-env.sh", tool.display());
    // Schemathesis keeps its cache (.schemathesis/) in the working directory:
    // a scratch one, so the tests leave the clone as they found it.
    let scratch = llm_service_test_support::fresh_directory();
    std::fs::create_dir_all(&scratch).unwrap();
    let output = Command::new(&tool)
        .current_dir(&scratch)
        .args(["run", description, "--url", base])
        .args(extra)
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", EXAMPLES, "--seed", "1", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let report =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found problems:\n{report}");
}

#[test]
fn generated_requests_get_only_documented_answers() {
    let ollama = FakeOllama::start(&[MODEL]);
    let service = Service::builder(BINARY).env("OLLAMA_BASE_URL", &ollama.url()).start();
    conforms(&service.url("/openapi.json"), &service.url(""), &[]);
}

#[test]
fn generated_key_calls_get_only_documented_answers() {
    let ollama = FakeOllama::start(&[MODEL]);
    let keys = llm_service_test_support::fresh_directory().join("keys.json");
    let service = Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("CLIENT_KEYS", "optional"),
            ("CLIENT_KEYS_FILE", &keys.display().to_string()),
        ])
        .start();
    let served = service.admin(ADMIN_TOKEN, "GET", "/openapi.json", b"");
    assert_eq!(served.status, 200, "{}", served.body);
    let kept: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/admin-openapi.json")).unwrap();
    assert_eq!(served.json(), kept);
    let authorization = format!("Authorization: Bearer {ADMIN_TOKEN}");
    conforms(&service.admin_url("/openapi.json"), &service.admin_url(""), &["-H", &authorization]);
    let made = service.admin(ADMIN_TOKEN, "GET", "/keys", b"");
    assert!(
        !made.json()["keys"].as_array().unwrap().is_empty(),
        "some generated keys were valid: {}",
        made.body
    );
}
