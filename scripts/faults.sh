#!/usr/bin/env bash
# The fault suite: the service under load while KeyDB, the model backend and
# its own clients misbehave. Prints a table of requests sent, ok, failed (an
# answer with an error status) and lost (no answer) per fault, and fails if
# any request was lost. `short` (the default; the test command runs it,
# about a minute) or `full` (the figures in docs/RELIABILITY.md, a few
# minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

size="${1:-short}"
./scripts/redis-server.sh
cargo build --locked -p llm-service -p llm-service-bench
# The floods need descriptors: take what the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/debug/llm-service-bench --service target/debug/llm-service --faults "$size"
