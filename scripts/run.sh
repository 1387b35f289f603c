#!/usr/bin/env bash
# The run command: builds and starts llm-service on :6001 (LLM_SERVICE_PORT).
# If nothing answers at OLLAMA_BASE_URL (default http://localhost:11434), it
# starts a real small model instead (SmolLM2-135M-Instruct on llama.cpp's
# OpenAI-compatible server) and points the service at it, so /generate
# answers on a fresh machine. Extra arguments go to llm-service.
# Unless ADMIN_TOKEN or ADMIN_TOKEN_FILE is set, it turns the admin API on
# with a token of its own, kept in ~/.config/llm-service/admin-token (0600,
# reused next time), and says where the console is.
#
# The first build compiles everything: about 9 minutes on 2 quiet cores,
# over 20 on a busy machine; it says so before it starts.
# SIGTERM, SIGINT (Ctrl-C) or SIGHUP to this script stops the service (it
# drains its requests) and then the model server it started.
set -euo pipefail
cd "$(dirname "$0")/.."

# How long the small model may take to load before this script gives up.
MODEL_START_SECONDS=60

rustup toolchain install
if [ ! -x target/release/llm-service ]; then
    echo "run.sh: first build: compiling everything in release mode takes about 9 minutes on 2 quiet cores (over 20 on a busy machine); later builds take seconds" >&2
fi
cargo build --release --locked

if [ -z "${ADMIN_TOKEN:-}" ] && [ -z "${ADMIN_TOKEN_FILE:-}" ]; then
    token_file="${XDG_CONFIG_HOME:-$HOME/.config}/llm-service/admin-token"
    if [ ! -s "$token_file" ]; then
        mkdir -p "$(dirname "$token_file")"
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32 >"$token_file")
    fi
    export ADMIN_TOKEN_FILE="$token_file"
    echo "run.sh: the console is at http://127.0.0.1:${ADMIN_PORT:-6002}/console/; sign in with the token in $token_file (cat it)" >&2
fi

model_pid=""
stop_model() { [ -z "$model_pid" ] || kill "$model_pid" 2>/dev/null || true; }
trap stop_model EXIT

OLLAMA_BASE_URL="${OLLAMA_BASE_URL:-http://localhost:11434}"
if [ -z "${BACKEND_BASE_URL:-}" ] && ! curl --silent --max-time 2 "${OLLAMA_BASE_URL}/api/version" >/dev/null; then
    echo "run.sh: no Ollama at ${OLLAMA_BASE_URL}; starting SmolLM2-135M (llama.cpp) instead" >&2
    python="$(./scripts/python-env.sh serve)"
    model_out="$(mktemp)"
    model_log="${TMPDIR:-/tmp}/llm-service-small-model.log"
    "$python" scripts/smollm2_server.py --port "${SMALL_MODEL_PORT:-8090}" --threads "$(nproc)" \
        >"$model_out" 2>"$model_log" &
    model_pid=$!
    deadline=$((SECONDS + MODEL_START_SECONDS))
    until grep -q '^listening ' "$model_out"; do
        if ! kill -0 "$model_pid" 2>/dev/null; then
            echo "run.sh: the small model server failed to start; the end of $model_log:" >&2
            tail -n 20 "$model_log" >&2
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "run.sh: the small model server did not listen within ${MODEL_START_SECONDS} s (its log: $model_log)" >&2
            exit 1
        fi
        sleep 0.1
    done
    export BACKEND_KIND=openai
    BACKEND_BASE_URL="$(sed -n 's/^listening //p' "$model_out")"
    export BACKEND_BASE_URL
    export OLLAMA_MODEL="${OLLAMA_MODEL:-smollm2-135m-instruct}"
    echo "run.sh: small model at $BACKEND_BASE_URL (its log: $model_log)" >&2
fi

./target/release/llm-service "$@" &
service_pid=$!
trap 'kill -TERM "$service_pid" 2>/dev/null || true' TERM INT HUP
status=0
wait "$service_pid" || status=$?
# A trapped signal ends `wait` early: wait again while the service drains.
while kill -0 "$service_pid" 2>/dev/null; do
    status=0
    wait "$service_pid" || status=$?
done
exit "$status"
