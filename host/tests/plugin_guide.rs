//! docs/plugins.md, the plugin author's guide: its commands run exactly as
//! written (from `cargo new` to a live plugin, its own test, the push from
//! the command line) against a running service, and the plugin they build
//! then shapes the generations of its character.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use llm_service_test_support::fake_ollama::FakeOllama;
use llm_service_test_support::{Service, fresh_directory};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");
const MODEL: &str = "llama3:8b-instruct-q5_K_M";
const TOKEN: &str = "plugin-guide-token";

/// The shell block between `<!-- guide:NAME -->` and `<!-- /guide:NAME -->`.
fn guide_block(guide: &str, name: &str) -> String {
    let start = format!("<!-- guide:{name} -->");
    let end = format!("<!-- /guide:{name} -->");
    let from = guide.find(&start).unwrap_or_else(|| panic!("the guide has no {start}")) + start.len();
    let to = guide[from..].find(&end).unwrap_or_else(|| panic!("the guide has no {end}")) + from;
    let block = guide[from..to].trim();
    block
        .strip_prefix("```sh")
        .and_then(|block| block.strip_suffix("```"))
        .unwrap_or_else(|| panic!("{start} is not one ```sh block"))
        .to_string()
}

#[test]
fn the_plugin_guide_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let guide = std::fs::read_to_string(repo.join("docs/plugins.md")).unwrap();
    let script = ["live", "test", "push"].map(|name| guide_block(&guide, name)).join("\n");

    let ollama = FakeOllama::start(&[MODEL]);
    let plugins_dir = fresh_directory();
    std::fs::create_dir_all(&plugins_dir).unwrap();
    let service = Service::builder(BINARY)
        .envs(&[
            ("OLLAMA_BASE_URL", &ollama.url()),
            ("ADMIN_TOKEN", TOKEN),
            ("PLUGINS_DIR", plugins_dir.to_str().unwrap()),
        ])
        .start();

    // A plugin author's shell: outside this repository, with `llm-service`
    // on the PATH and none of this test's cargo settings.
    let work = fresh_directory();
    std::fs::create_dir_all(&work).unwrap();
    let bin_dir = Path::new(BINARY).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut shell = Command::new("bash");
    shell.arg("-c").arg(format!("set -euo pipefail\n{script}")).current_dir(&work);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().to_string();
        if (key.starts_with("CARGO") && key != "CARGO_HOME") || key.starts_with("RUSTFLAGS") {
            shell.env_remove(key);
        }
    }
    let output = shell
        .env("PATH", path)
        .env("LLM_SERVICE_DIR", repo)
        .env("PLUGINS_DIR", &plugins_dir)
        .env("ADMIN_TOKEN", TOKEN)
        .env("ADMIN_URL", service.admin_url(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the guide's commands failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("test tests::greets_briefly ... ok"), "{stdout}");
    assert!(stdout.contains("\"name\": \"greeter\""), "the push printed the plugin: {stdout}");

    service.wait_for_log(Duration::from_secs(20), |line| {
        line["message"] == "plugin now serving"
            && line["plugin"] == "greeter"
            && line["source"].as_str().is_some_and(|source| source.starts_with("watch:"))
    });
    let reply = service.generate(&json!({"prompt": "Hi there", "character_name": "greeter"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sent = ollama.generate_requests().pop().unwrap();
    assert_eq!(sent["system"], "You are a cheerful greeter. Keep it short.");
    assert_eq!(sent["options"]["num_predict"], 60);
    assert_eq!(sent["options"]["stop"], json!(["Human:", "Assistant:", "\n\n\n", "Guest:"]));
}
