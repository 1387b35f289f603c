//! What container platforms rely on: the `probe` subcommand (the image's
//! HEALTHCHECK, which has no shell tools to call), the admin token read from
//! a secret file, and `GET /`, which Ollama's clients probe.

use std::process::{Command, Output};

use llm_service_test_support::{Client, Service, fresh_directory};

const BINARY: &str = env!("CARGO_BIN_EXE_llm-service");

/// Runs the binary with only `env` set, as a HEALTHCHECK would.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("running llm-service")
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn probe_asks_the_local_service_and_fails_on_a_closed_port() {
    let service = Service::builder(BINARY).start();
    let port = service.url("").rsplit(':').next().unwrap().to_string();
    // The default address: loopback at LLM_SERVICE_PORT, as in the image.
    let live = run(&["probe"], &[("LLM_SERVICE_PORT", &port)]);
    assert_eq!(live.status.code(), Some(0), "{live:?}");
    assert!(String::from_utf8_lossy(&live.stdout).contains("/livez: 200 OK"), "{live:?}");
    let ready = run(&["probe", "--ready"], &[("LLM_SERVICE_PORT", &port)]);
    assert_eq!(ready.status.code(), Some(0), "{ready:?}");
    assert!(String::from_utf8_lossy(&ready.stdout).contains("/readyz: 200 OK"), "{ready:?}");

    let closed = run(&["probe"], &[("LLM_SERVICE_PORT", &closed_port().to_string())]);
    assert_eq!(closed.status.code(), Some(1), "{closed:?}");
    assert!(String::from_utf8_lossy(&closed.stderr).contains("/livez"), "{closed:?}");
    // A probe needs no admin token, and a wrong path is a failure, not a pass.
    let elsewhere = run(&["probe", "--url", &service.url("/nope")], &[]);
    assert_eq!(elsewhere.status.code(), Some(1), "{elsewhere:?}");
}

#[test]
fn the_admin_token_comes_from_a_file() {
    let dir = fresh_directory();
    std::fs::create_dir_all(&dir).unwrap();
    let token = "a-token-from-a-secret-file-0123";
    let file = dir.join("admin_token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let service = Service::builder(BINARY).env("ADMIN_TOKEN_FILE", file.to_str().unwrap()).start();
    let components = service.admin_url("/components");
    assert_eq!(service.admin(token, "GET", "/components", b"").status, 200, "{components}");
    assert_eq!(service.admin("a-token-from-a-secret-file-0124", "GET", "/components", b"").status, 401);

    std::fs::write(&file, "short\n").unwrap();
    let refused = run(&[], &[("ADMIN_TOKEN_FILE", file.to_str().unwrap()), ("LLM_SERVICE_PORT", "0")]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("ADMIN_TOKEN_FILE") && message.contains("16 characters"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_root_path_answers_as_ollama_does() {
    let service = Service::builder(BINARY).start();
    let reply = Client::new().get(&service.url("/"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "Ollama is running"));
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    let head = Client::new().send("HEAD", &service.url("/"), b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
}
