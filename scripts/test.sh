#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh machine, then
# runs every test. Safe to run again: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain pinned in rust-toolchain.toml, with the wasm32-wasip2 target
# (cargo does not add a missing target by itself).
rustup toolchain install

# redis-server, the KeyDB stand-in the cache tests and the bench's smoke
# run start and kill themselves.
./scripts/redis-server.sh

# The real small model (llama.cpp's server + SmolLM2-135M) for end-to-end tests.
LLM_SERVICE_TEST_PYTHON="$(./scripts/python-env.sh)"
export LLM_SERVICE_TEST_PYTHON

# Debian's chromium and playwright-core, for the console's browser tests;
# the npm clients (the Anthropic SDK, Claude Code) for the dialect tests.
./scripts/browser-env.sh

# Guest crates' own unit tests, run natively (they never call the host there).
cargo test --manifest-path components/Cargo.toml --workspace --locked

# The host: unit tests, then integration tests against the real binary;
# the bench's smoke run (a few seconds, every row, no speed asserted).
cargo test --workspace --locked

# The fault suite, short form: no request may be lost while KeyDB, the
# backend and the clients misbehave (docs/RELIABILITY.md has a full run).
./scripts/faults.sh short

# The container image: lint the Dockerfile, compose.yaml and the Kubernetes
# manifests, build the image (with buildah and local stand-in base images
# where no Docker daemon runs), and run the binary from its root filesystem.
./scripts/container-test.sh
