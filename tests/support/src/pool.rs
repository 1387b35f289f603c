//! A service in front of a pool of fake nodes (a BACKENDS_FILE), started
//! once every node's models are known.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Client, Service};

/// How long a pool's nodes may take to be known.
const KNOWN_WITHIN: Duration = Duration::from_secs(20);

/// Starts `binary` on the nodes of `file` (model `m1`, refreshed every
/// 0.2 s) with `extra` settings, and waits until every node's models are
/// known.
pub fn start(binary: &str, file: &Path, extra: &[(&str, &str)]) -> Service {
    let service = Service::builder(binary)
        .envs(&[
            ("BACKENDS_FILE", file.to_str().expect("a UTF-8 path")),
            ("OLLAMA_MODEL", "m1"),
            ("HEALTH_CHECK_INTERVAL", "0.2"),
        ])
        .envs(extra)
        .start();
    let deadline = Instant::now() + KNOWN_WITHIN;
    loop {
        let health = Client::new().get(&service.url("/health")).json();
        let known = health["backends"].as_array().is_some_and(|nodes| {
            nodes.iter().all(|node| node["models"].as_array().is_some_and(|models| !models.is_empty()))
        });
        if known {
            return service;
        }
        assert!(Instant::now() < deadline, "every node's models are known within {KNOWN_WITHIN:?}: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
