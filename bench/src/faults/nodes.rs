//! The pool's node faults: three one-slot fake nodes serving one model, two
//! healthy (20 ms to answer) and one that misbehaves at full speed (junk,
//! a 400 to everything, hangs, or flaps), under uncached load. The calls
//! must succeed elsewhere (at least 99%) and the bad node must be ejected
//! (it draws few calls, and its failures are counted).

use std::path::Path;
use std::time::Duration;

use llm_service_test_support::fake_ollama::{FakeOllama, Fault};
use serde_json::json;

use super::{FaultRow, Load, MODEL, Size, counter};
use crate::service::ServiceProcess;

/// One row: the bad node `c` gets `trouble` while the load runs.
fn with_one_bad_node(
    binary: &Path,
    size: Size,
    name: &str,
    extra: &[(&str, String)],
    trouble: impl FnOnce(&FakeOllama, Duration),
) -> anyhow::Result<FaultRow> {
    let nodes = [FakeOllama::start(&[MODEL]), FakeOllama::start(&[MODEL]), FakeOllama::start(&[MODEL])];
    for healthy in &nodes[..2] {
        healthy.set_latency(Duration::from_millis(20));
    }
    let file = std::env::temp_dir().join(format!("llm-service-faults-nodes-{}.toml", std::process::id()));
    let entries: String = ["a", "b", "c"]
        .iter()
        .zip(&nodes)
        .map(|(name, node)| format!("[[node]]\nname = \"{name}\"\nurl = \"{}\"\nslots = 1\n\n", node.url()))
        .collect();
    std::fs::write(&file, entries)?;
    let log = std::env::temp_dir().join(format!("llm-service-faults-nodes-{}.log", std::process::id()));
    let mut settings = vec![
        ("BACKENDS_FILE", file.display().to_string()),
        ("OLLAMA_MODEL", MODEL.to_string()),
        ("HEALTH_CHECK_INTERVAL", "0.5".to_string()),
    ];
    settings.extend(extra.iter().cloned());
    let service = ServiceProcess::start(binary, &settings, &log)?;
    let load = Load::start(service.addr, 8, |n| {
        ("POST", "/generate".into(), json!({"prompt": format!("uncached {n}"), "use_cache": false}))
    });
    trouble(&nodes[2], size.pick(Duration::from_secs(3), Duration::from_secs(10)));
    let counts = load.finish();
    let drew = nodes[2].requests().iter().filter(|request| request.path == "/api/generate").count();
    let failures = counter(service.addr, "llm_service_backend_node_failures_total{node=\"c\"}");
    let notes = format!(
        "c drew {drew} of {} calls; {failures} failures counted against c; failed = answers that were not 2xx",
        counts.sent()
    );
    anyhow::ensure!(counts.failed * 100 <= counts.sent(), "fewer than 99% succeeded: {notes}");
    let _ = std::fs::remove_file(&file);
    Ok(FaultRow { fault: name.into(), counts, notes })
}

fn lasting(fault: Fault) -> impl FnOnce(&FakeOllama, Duration) {
    move |node, during| {
        node.set_fault(Some(fault));
        std::thread::sleep(during);
    }
}

pub(super) fn junk(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    with_one_bad_node(binary, size, "pool node answers 200 with junk", &[], lasting(Fault::Junk))
}

pub(super) fn fast_400(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    with_one_bad_node(binary, size, "pool node answers 400 to everything", &[], lasting(Fault::Status(400)))
}

pub(super) fn hang(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    let timeout = [("REQUEST_TIMEOUT", "2".to_string())];
    with_one_bad_node(binary, size, "pool node hangs (2 s deadline)", &timeout, lasting(Fault::Hang))
}

pub(super) fn flap(binary: &Path, size: Size) -> anyhow::Result<FaultRow> {
    with_one_bad_node(binary, size, "pool node flaps (200 ms down, 200 ms up)", &[], |node, during| {
        for _ in 0..(during.as_millis() / 400) {
            node.set_offline(true);
            std::thread::sleep(Duration::from_millis(200));
            node.set_offline(false);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}
