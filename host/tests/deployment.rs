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

/// The image's builder copies only what the build needs, so a file the host
/// compiles in from outside the copied folders (`include_str!`) must be
/// named by a `COPY` line, or the image build fails where `cargo build` in a
/// checkout passes (the container test found `docs/admin-openapi.json` so).
#[test]
fn the_image_copies_every_file_the_host_compiles_in() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let copied: Vec<String> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .flat_map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            words[..words.len() - 1].iter().map(|w| w.to_string()).collect::<Vec<_>>()
        })
        .collect();
    let mut included = Vec::new();
    let mut folders = vec![root.join("host/src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in source.split("include_str!(\"").skip(1) {
                let relative = piece.split('"').next().unwrap();
                let file = path.parent().unwrap().join(relative).canonicalize().unwrap();
                included.push(file.strip_prefix(root.canonicalize().unwrap()).unwrap().to_owned());
            }
        }
    }
    assert!(included.iter().any(|f| f.starts_with("docs")), "the scan found {included:?}");
    for file in included {
        let file = file.to_string_lossy();
        assert!(
            copied.iter().any(|c| file == *c || file.starts_with(&format!("{}/", c.trim_end_matches('/')))),
            "the host compiles in {file}, which no COPY line of the Dockerfile names ({copied:?})"
        );
    }
}
