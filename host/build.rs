//! Builds the guest components (`components/`, its own workspace) for
//! wasm32-wasip2 with a nested cargo, into a target directory of their own,
//! and tells the host crate where the artifacts are:
//! `LLM_SERVICE_HANDLER_WASM` (the default handler, embedded in the binary),
//! `LLM_SERVICE_PLUGIN_<NAME>` for the example plugins and
//! `LLM_SERVICE_TEST_PROGRAM_<NAME>` for each test component.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest crates the host needs, and the environment variable each
/// artifact's path is published under.
const ARTIFACTS: &[(&str, &str)] = &[
    ("handler", "LLM_SERVICE_HANDLER_WASM"),
    ("misbehave", "LLM_SERVICE_TEST_PROGRAM_MISBEHAVE"),
    ("sick", "LLM_SERVICE_TEST_PROGRAM_SICK"),
    ("failing_generate", "LLM_SERVICE_TEST_PROGRAM_FAILING_GENERATE"),
    ("command", "LLM_SERVICE_TEST_PROGRAM_COMMAND"),
    ("first_protocol", "LLM_SERVICE_TEST_PROGRAM_FIRST_PROTOCOL"),
    ("peter", "LLM_SERVICE_PLUGIN_PETER"),
    ("tidy", "LLM_SERVICE_PLUGIN_TIDY"),
    ("plugin_faulty", "LLM_SERVICE_TEST_PROGRAM_PLUGIN_FAULTY"),
    ("plugin_outbound", "LLM_SERVICE_TEST_PROGRAM_PLUGIN_OUTBOUND"),
    ("plugin_peter_v2", "LLM_SERVICE_TEST_PROGRAM_PLUGIN_PETER_V2"),
];

const GUEST_TARGET: &str = "wasm32-wasip2";

fn main() {
    let host_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo = host_dir.parent().expect("host/ lives in the repository root");
    let components = repo.join("components");
    println!("cargo:rerun-if-changed={}", components.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", components.join("Cargo.lock").display());
    for dir in ["sdk", "plugin-sdk", "handler", "plugins", "test-programs"] {
        println!("cargo:rerun-if-changed={}", components.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", repo.join("wit").display());
    // The handler embeds the API's description.
    println!("cargo:rerun-if-changed={}", repo.join("docs/openapi.json").display());

    // One guest target directory for every host profile: a debug test run
    // and a release build share the (always release) guest artifacts.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("wasm-components");
    build_guests(&components, &target_dir);

    let artifacts = target_dir.join(GUEST_TARGET).join("release");
    for (crate_name, variable) in ARTIFACTS {
        let path = artifacts.join(format!("{crate_name}.wasm"));
        assert!(path.exists(), "guest build produced no {}", path.display());
        println!("cargo:rustc-env={variable}={}", path.display());
    }
}

fn build_guests(components: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(components)
        .args(["build", "--release", "--workspace", "--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        // Cargo reads this script's stdout for directives; keep the nested
        // build's chatter on stderr.
        .stdout(std::io::stderr());
    // The host's flags, target and profile settings are not the guests'.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let foreign = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_FEATURE_")
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH";
        if foreign {
            command.env_remove(key.as_ref());
        }
    }
    let status = command.status().expect("running cargo for the guest components");
    assert!(
        status.success(),
        "building the guest components failed (is the {GUEST_TARGET} target installed? run `rustup toolchain install`)"
    );
}
