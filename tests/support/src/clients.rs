//! The official clients from PyPI and npm, unmodified, driven by the scripts
//! in `tests/clients/`: each asserts as it goes and prints one JSON line of
//! what it saw, which the test reads back.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the Python client `tests/clients/{script}` with `args` in the
/// tests' venv (`LLM_SERVICE_TEST_PYTHON`, else `.venv`).
pub fn python(script: &str, args: &[&str]) -> Value {
    let python = std::env::var_os("LLM_SERVICE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(python.exists(), "{} is missing: run scripts/python-env.sh", python.display());
    run(Command::new(python), script, args)
}

/// Runs the node client `tests/clients/{script}` with `args` (its packages
/// come from `tests/clients/node_modules`, which scripts/browser-env.sh installs).
pub fn node(script: &str, args: &[&str]) -> Value {
    let packages = repo().join("tests/clients/node_modules/@anthropic-ai/sdk");
    assert!(packages.exists(), "{} is missing: run scripts/browser-env.sh", packages.display());
    run(Command::new("node"), script, args)
}

/// Runs Claude Code (`@anthropic-ai/claude-code` from npm) headless, as
/// `claude -p PROMPT`, against the Anthropic API at `url` with `model`, in
/// `home` (its home and working directory, which its system prompt names)
/// and with its non-essential traffic off (it reaches nothing but `url`).
/// Returns its exit success, stdout and stderr.
pub fn claude_code(home: &std::path::Path, url: &str, model: &str, prompt: &str) -> (bool, String, String) {
    let claude = repo().join("tests/clients/node_modules/.bin/claude");
    assert!(claude.exists(), "{} is missing: run scripts/browser-env.sh", claude.display());
    std::fs::create_dir_all(home).expect("a home for Claude Code");
    let output = Command::new(claude)
        .args(["-p", prompt])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", url)
        .env("ANTHROPIC_AUTH_TOKEN", "unused")
        .env("ANTHROPIC_MODEL", model)
        .env("ANTHROPIC_SMALL_FAST_MODEL", model)
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .current_dir(home)
        .output()
        .unwrap_or_else(|error| panic!("claude could not start: {error}"));
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn run(mut command: Command, script: &str, args: &[&str]) -> Value {
    let output = command
        .arg(repo().join("tests/clients").join(script))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap_or_else(|error| panic!("{script} could not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{script} printed no JSON line ({error}):\n{stdout}"))
}
