#!/usr/bin/env bash
# The bench command: builds the release binaries, then runs every scenario
# of the benchmark harness (a few minutes on 2 cores) and prints one table,
# each throughput row with its ratio to a native hyper server measured in
# the same run. Extra arguments go to llm-service-bench (--seconds,
# --connections, --rate, --smoke; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup toolchain install
./scripts/redis-server.sh
cargo build --release --locked -p llm-service -p llm-service-bench
./target/release/llm-service-bench --service target/release/llm-service "$@"
