#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then
# runs every test. Safe to run again: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain pinned in rust-toolchain.toml, with the wasm32-wasip2 target
# (cargo does not add a missing target by itself).
rustup toolchain install

cargo test --workspace --locked
