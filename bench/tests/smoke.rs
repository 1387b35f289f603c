//! The bench's smoke run: every row runs against the service binary built
//! beside this test, in a few seconds. Speeds are printed, never asserted;
//! what is asserted is that each row produced its figures.

use std::path::PathBuf;
use std::process::Command;

/// The llm-service binary of this build (built first if need be).
fn service_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_llm-service-bench"));
    let binary = bench.with_file_name("llm-service");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile =
            if bench.parent().is_some_and(|dir| dir.ends_with("release")) { "release" } else { "dev" };
        let status = Command::new(cargo)
            .args(["build", "-p", "llm-service", "--bin", "llm-service", "--profile", profile])
            .status()
            .unwrap();
        assert!(status.success(), "building llm-service failed");
    }
    binary
}

#[test]
fn every_row_runs_in_a_smoke_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_llm-service-bench"))
        .arg("--smoke")
        .arg("--service")
        .arg(service_binary())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (main, field) = stdout.split_once("## The field's rows").expect("the field's rows follow the table");
    let rows: Vec<&str> =
        main.lines().filter(|line| line.starts_with("| ") && !line.starts_with("| #")).collect();
    assert_eq!(rows.len(), 16, "{stdout}");
    for (index, row) in rows.iter().enumerate() {
        assert!(row.starts_with(&format!("| {} |", index + 1)), "{row}");
    }
    // Throughput rows carry a rate and a ratio; the others their findings.
    for index in [0, 1, 2, 6, 8, 9, 11] {
        let cells: Vec<&str> = rows[index].split('|').map(str::trim).collect();
        assert!(cells[3].parse::<f64>().is_ok_and(|rate| rate > 0.0), "{}", rows[index]);
        assert!(cells[4].parse::<f64>().is_ok(), "{}", rows[index]);
    }
    assert!(
        rows[3].contains("keys in KeyDB"),
        "KeyDB row (scripts/test.sh installs redis-server): {}",
        rows[3]
    );
    assert!(rows[4].contains("added by the gateway"), "{}", rows[4]);
    assert!(rows[5].contains("1 backend call(s) for 100 answers"), "single-flight: {}", rows[5]);
    assert!(rows[6].contains("2 of 2 swaps"), "{}", rows[6]);
    assert!(rows[7].contains("without the compiled cache"), "{}", rows[7]);
    assert!(rows[8].contains("the cost of row 3"), "plugin row: {}", rows[8]);
    assert!(rows[9].contains("one node's") && rows[9].contains("calls per node"), "pool row: {}", rows[9]);
    assert!(
        rows[10].contains("1 backend call(s) for 100 answers; 3 replicas without a shared store: 3"),
        "replicas row: {}",
        rows[10]
    );
    for keyed in &rows[14..16] {
        assert!(keyed.contains("of row 3's throughput"), "key rows: {keyed}");
    }
    // The field's rows: each dialect's added latency, the sweep, streams, memory.
    for dialect in ["seed /generate", "Ollama /api/chat", "OpenAI /v1/chat/completions"] {
        let row = field.lines().find(|line| line.starts_with(&format!("| {dialect} |"))).unwrap_or_default();
        assert_eq!(row.matches(" / ").count(), 3, "{dialect}: {field}");
    }
    assert!(field.contains("- p99 under 5 ms: gateway"), "{field}");
    assert!(field.contains("| 8 | 8 | 0 |"), "every smoke stream complete, none stalled: {field}");
    assert!(field.contains("Most streams sustained (every frame, none stalled): 8."), "{field}");
    let memory = field.lines().find(|line| line.starts_with("Resident memory")).unwrap_or_default();
    assert_eq!(memory.matches(" MB").count(), 3, "{field}");
}
