#!/usr/bin/env bash
# The run command: builds and starts llm-service on :6001 (LLM_SERVICE_PORT).
# If nothing answers at OLLAMA_BASE_URL (default http://localhost:11434), it
# starts a real small model instead (SmolLM2-135M-Instruct on llama.cpp's
# OpenAI-compatible server) and points the service at it, so /generate
# answers on a fresh machine. Extra arguments go to llm-service.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup toolchain install
cargo build --release --locked

OLLAMA_BASE_URL="${OLLAMA_BASE_URL:-http://localhost:11434}"
if [ -z "${BACKEND_BASE_URL:-}" ] && ! curl --silent --max-time 2 "${OLLAMA_BASE_URL}/api/version" >/dev/null; then
    echo "run.sh: no Ollama at ${OLLAMA_BASE_URL}; starting SmolLM2-135M (llama.cpp) instead" >&2
    python="$(./scripts/python-env.sh)"
    model_log="$(mktemp)"
    "$python" scripts/smollm2_server.py --port "${SMALL_MODEL_PORT:-8090}" >"$model_log" 2>/dev/null &
    model_pid=$!
    trap 'kill "$model_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 600); do
        grep -q '^listening ' "$model_log" && break
        kill -0 "$model_pid" 2>/dev/null || { echo "run.sh: the small model server failed to start" >&2; exit 1; }
        sleep 0.1
    done
    export BACKEND_KIND=openai
    BACKEND_BASE_URL="$(sed -n 's/^listening //p' "$model_log")"
    export BACKEND_BASE_URL
    export OLLAMA_MODEL="${OLLAMA_MODEL:-smollm2-135m-instruct}"
fi

./target/release/llm-service "$@"
