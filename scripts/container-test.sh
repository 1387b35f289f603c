#!/usr/bin/env bash
# The container test: lints the Dockerfile, compose.yaml and the Kubernetes
# manifests, builds the image, and runs the image's own entrypoint as the
# image's own user, from the image's root filesystem, on loopback.
#
# It works where no Docker daemon runs (this project's CI machines):
# - it builds with `docker build` when a daemon answers, else with
#   `buildah bud` (Debian's buildah);
# - base images that cannot be pulled are replaced by local stand-ins with
#   the same names: Debian slim from `debootstrap`, and a Rust builder on it
#   with the toolchain rust-toolchain.toml pins. It says so when it does;
# - containers may not start in such a sandbox, so it mounts the image's
#   root filesystem and starts the entrypoint inside it with chroot, in a
#   mount namespace of its own (unshare) with /dev and /proc.
#
# Then it checks: /livez, /readyz, /health, `llm-service probe` (and that
# it fails on a closed port), a real generation (the small model) twice,
# the second from the cache, the admin API with ADMIN_TOKEN_FILE, that the
# process runs as the image's non-root user, that SIGTERM stops it
# cleanly, and the image's size. Needs root (chroot, mounts, buildah).
#
# usage: scripts/container-test.sh        (IMAGE=... to name the image)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-localhost/llm-service:test}"
RUST_VERSION="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
DEBIAN_RELEASE=bookworm
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# The image holds Debian slim and one binary; past this something crept in.
MAX_IMAGE_MB=200
# buildah runs its RUN steps under these limits (this machine's hard limits).
ULIMITS=(--ulimit nproc=32768:32768 --ulimit nofile=20000:20000)

say() { printf 'container-test: %s\n' "$*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

docker_daemon() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

install_tools() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    # podman-compose (the lint's compose renderer) asks `podman version` first.
    command -v podman >/dev/null || missing+=(podman)
    if ! docker_daemon; then
        command -v buildah >/dev/null || missing+=(buildah)
        command -v debootstrap >/dev/null || missing+=(debootstrap)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} from Debian's packages"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

lint() {
    local bin
    bin="$(dirname "$(./scripts/python-env.sh)")"
    "$bin/hadolint" Dockerfile deploy/container/*.Containerfile
    "$bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
    "$bin/podman-compose" -f compose.yaml --profile ollama config >/dev/null
    "$bin/podman-compose" -f compose.yaml --profile small-model \
        --env-file deploy/compose/small-model.env config | grep -q 'BACKEND_KIND: openai' ||
        fail "the small-model env file does not reach llm-service"
    "$bin/podman-compose" -f compose.yaml --profile replicas config | "$bin/python" -c '
import sys, yaml
services = yaml.safe_load(sys.stdin)["services"]
assert all(services[f"replica-{name}"]["environment"]["REDIS_CLUSTER_NODES"] for name in "abc")
assert all(services[f"replica-{name}"]["environment"]["FLEET_SIGNING_KEY_FILE"] for name in "abc")
assert set(services["balancer"]["depends_on"]) == {"replica-a", "replica-b", "replica-c"}
' || fail "the replicas profile does not give its three replicas the cluster, the fleet key and the balancer"
    "$bin/kubernetes-validate" --strict --quiet deploy/kubernetes/*.yaml
    say "lint: hadolint, the compose schema, podman-compose config (three profiles) and kubernetes-validate pass"
}

# A Debian slim stand-in: debootstrap's minimal system without apt's
# caches, documentation and translations, as the official slim image drops.
standin_debian() {
    local name="$1" work
    work="$(mktemp -d)"
    debootstrap --variant=minbase "$DEBIAN_RELEASE" "$work/rootfs" "$DEBIAN_MIRROR" >"$work/log" 2>&1 ||
        { tail -20 "$work/log" >&2; fail "debootstrap $DEBIAN_RELEASE"; }
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
        "$work"/rootfs/usr/share/{doc,man,info,locale}/*
    tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -C "$work/rootfs" -cf "$work/rootfs.tar" .
    local container
    container="$(buildah from scratch)"
    buildah add "$container" "$work/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash --label llm-service.stand-in=debootstrap "$container"
    buildah commit -q "$container" "$name" >/dev/null
    buildah rm "$container" >/dev/null
    rm -rf "$work"
}

# A Rust builder stand-in on the Debian one, trusting this machine's CAs.
standin_rust() {
    local name="$1" context
    context="$(mktemp -d)"
    mkdir "$context/ca"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
    buildah bud --isolation chroot "${ULIMITS[@]}" -q --pull=never \
        --build-arg RUST_VERSION="$RUST_VERSION" --build-arg DEBIAN_RELEASE="$DEBIAN_RELEASE" \
        --label llm-service.stand-in=rustup \
        -f deploy/container/rust-standin.Containerfile -t "$name" "$context" >"$WORK/standin-rust.log" 2>&1 ||
        { tail -40 "$WORK/standin-rust.log" >&2; fail "building the Rust builder stand-in"; }
    rm -rf "$context"
}

ensure_base_image() {
    local name="docker.io/library/$1" make="$2"
    buildah inspect --type image "$name" >/dev/null 2>&1 && return
    buildah pull -q "$name" >/dev/null 2>&1 && return
    say "cannot pull $name: building a local stand-in with that name ($make)"
    "standin_${make}" "$name"
}

build() {
    local started=$SECONDS
    if docker_daemon; then
        docker build -t "$IMAGE" .
    else
        ensure_base_image "debian:${DEBIAN_RELEASE}-slim" debian
        ensure_base_image "rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE}" rust
        # Docker format: OCI images have no HEALTHCHECK.
        buildah bud --isolation chroot "${ULIMITS[@]}" --format docker --layers --pull=never \
            -t "$IMAGE" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "building the image"; }
    fi
    BUILD_SECONDS=$((SECONDS - started))
    say "built $IMAGE in $((BUILD_SECONDS / 60))m$((BUILD_SECONDS % 60))s"
}

# The image's root filesystem, at $ROOT.
mount_image() {
    if docker_daemon; then
        ROOT="$WORK/rootfs"
        mkdir "$ROOT"
        local container
        container="$(docker create "$IMAGE")"
        docker export "$container" | tar -x -C "$ROOT"
        docker rm "$container" >/dev/null
    else
        CONTAINER="$(buildah from --pull-never "$IMAGE")"
        ROOT="$(buildah mount "$CONTAINER")"
    fi
}

# One field of the image's (Docker-format) config, a list one item a line.
image_config() {
    local field="$1"
    if docker_daemon; then docker image inspect "$IMAGE"; else buildah inspect --type image "$IMAGE"; fi |
        python3 -c '
import json, sys
image = json.load(sys.stdin)
config = image[0]["Config"] if isinstance(image, list) else image["Docker"]["config"]
value = config.get(sys.argv[1]) or ""
if isinstance(value, dict):
    value = value.get("Test") or []
print("\n".join(value) if isinstance(value, list) else value)
' "$field"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Polls $1 until it answers 200 or $2 seconds pass; the service must live.
wait_for() {
    local url="$1" deadline=$((SECONDS + $2))
    until curl -sf -o /dev/null "$url"; do
        kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$WORK/service.log" >&2; fail "the service exited"; }
        [ $SECONDS -lt $deadline ] || fail "$url did not answer 200 within $2 s"
        sleep 0.1
    done
}

cleanup() {
    [ -n "${SERVICE_PID:-}" ] && kill -KILL "$SERVICE_PID" 2>/dev/null
    [ -n "${MODEL_PID:-}" ] && kill "$MODEL_PID" 2>/dev/null
    [ -n "${REDIS_PID:-}" ] && kill "$REDIS_PID" 2>/dev/null
    wait 2>/dev/null
    if [ -n "${CONTAINER:-}" ]; then
        buildah umount "$CONTAINER" >/dev/null 2>&1
        buildah rm "$CONTAINER" >/dev/null 2>&1
    fi
    rm -rf "$WORK"
}

WORK="$(mktemp -d)"
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] || fail "run as root (chroot, mounts and buildah need it)"
install_tools
lint
build
mount_image

# What the image says about itself.
USER_SPEC="$(image_config User)"
mapfile -t ENTRYPOINT < <(image_config Entrypoint)
mapfile -t IMAGE_ENV < <(image_config Env)
HEALTHCHECK="$(image_config Healthcheck | paste -sd ' ')"
STOP_SIGNAL="$(image_config StopSignal)"
[ "$STOP_SIGNAL" = SIGTERM ] || fail "the image's STOPSIGNAL is '$STOP_SIGNAL', not SIGTERM"
[ -n "$USER_SPEC" ] || fail "the image sets no USER: it would run as root"
IMAGE_UID="${USER_SPEC%%:*}"
[[ "$IMAGE_UID" =~ ^[0-9]+$ ]] || IMAGE_UID="$(awk -F: -v name="$IMAGE_UID" '$1 == name { print $3 }' "$ROOT/etc/passwd")"
[ "${IMAGE_UID:-0}" -ne 0 ] || fail "the image's user ($USER_SPEC) is root"
[[ "$HEALTHCHECK" == *probe* ]] || fail "the image's HEALTHCHECK does not run probe: $HEALTHCHECK"
IMAGE_MB=$(($(du -sb "$ROOT" | cut -f1) / 1000000))
[ "$IMAGE_MB" -le "$MAX_IMAGE_MB" ] || fail "the image's filesystem is $IMAGE_MB MB, over $MAX_IMAGE_MB MB"
say "image: ${IMAGE_MB} MB unpacked, user $USER_SPEC, entrypoint ${ENTRYPOINT[*]}, healthcheck $HEALTHCHECK"

# Its neighbours on loopback: KeyDB (redis-server) and the real small model.
./scripts/redis-server.sh
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
PYTHON="$(./scripts/python-env.sh)"
"$PYTHON" scripts/smollm2_server.py --port 0 >"$WORK/model.out" 2>"$WORK/model.log" &
MODEL_PID=$!
deadline=$((SECONDS + 60))
until grep -q '^listening ' "$WORK/model.out"; do
    kill -0 "$MODEL_PID" 2>/dev/null || { tail "$WORK/model.log" >&2; fail "the small model server exited"; }
    [ $SECONDS -lt $deadline ] || fail "the small model server did not listen within 60 s"
    sleep 0.1
done
MODEL_URL="$(sed -n 's/^listening //p' "$WORK/model.out")"

# The service: the image's entrypoint, environment and user, inside its rootfs.
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
TOKEN="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
install -m 0400 -o "$IMAGE_UID" /dev/null "$ROOT/tmp/admin_token"
printf '%s\n' "$TOKEN" >"$ROOT/tmp/admin_token"
RUN_ENV=("${IMAGE_ENV[@]}" LLM_SERVICE_BIND=127.0.0.1 "LLM_SERVICE_PORT=$PORT"
    ADMIN_BIND=127.0.0.1 "ADMIN_PORT=$ADMIN_PORT" ADMIN_TOKEN_FILE=/tmp/admin_token
    BACKEND_KIND=openai "BACKEND_BASE_URL=$MODEL_URL" OLLAMA_MODEL=smollm2-135m-instruct
    "REDIS_URL=redis://127.0.0.1:$REDIS_PORT" HEALTH_CHECK_INTERVAL=1)
in_image() { env -i "${RUN_ENV[@]}" chroot --userspec="$USER_SPEC" "$ROOT" "$@"; }
# shellcheck disable=SC2016 # $1 is the inner shell's
unshare --mount --propagation private -- sh -c \
    'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && shift && exec "$@"' _ "$ROOT" \
    env -i "${RUN_ENV[@]}" chroot --userspec="$USER_SPEC" "$ROOT" "${ENTRYPOINT[@]}" >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
BASE="http://127.0.0.1:$PORT"
wait_for "$BASE/livez" 60
wait_for "$BASE/readyz" 10
RUNNING_UID="$(awk '/^Uid:/ { print $2 }' "/proc/$SERVICE_PID/status")"
[ "$RUNNING_UID" = "$IMAGE_UID" ] || fail "the service runs as uid $RUNNING_UID, not the image's $IMAGE_UID"
say "/livez and /readyz answer 200; the service runs as uid $RUNNING_UID"

# /health: healthy once the background checks have seen the model and KeyDB.
deadline=$((SECONDS + 20))
until [[ "$(curl -s "$BASE/health")" == *'"status":"healthy"'* ]]; do
    [ $SECONDS -lt $deadline ] || fail "/health did not turn healthy: $(curl -s "$BASE/health")"
    sleep 0.2
done
say "/health: $(curl -s "$BASE/health")"

in_image "${ENTRYPOINT[@]}" probe >/dev/null || fail "probe (liveness) failed"
in_image "${ENTRYPOINT[@]}" probe --ready >/dev/null || fail "probe --ready failed"
if in_image "${ENTRYPOINT[@]}" probe --url "http://127.0.0.1:$(free_port)" >/dev/null 2>&1; then
    fail "probe passed against a closed port"
fi
say "probe and probe --ready exit 0; probe against a closed port exits 1"

body='{"prompt": "Say hello to a friend.", "character_name": "peter", "settings": {"max_tokens": 16, "seed": 1}}'
for expected in MISS HIT; do
    curl -s -D "$WORK/headers" -o "$WORK/answer" -H 'content-type: application/json' -d "$body" "$BASE/generate"
    grep -q '^HTTP/1.1 200' "$WORK/headers" || fail "/generate: $(head -1 "$WORK/headers") $(cat "$WORK/answer")"
    grep -qi "^x-cache: $expected" "$WORK/headers" || fail "/generate was not a cache $expected"
    python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["response"].strip()' "$WORK/answer" ||
        fail "/generate gave no text: $(cat "$WORK/answer")"
done
say "/generate: real text from the small model, then the same answer from the cache"

status="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$ADMIN_PORT/components")"
[ "$status" = 200 ] || fail "the admin API refused the token from ADMIN_TOKEN_FILE: $status"
say "the admin API takes the token from ADMIN_TOKEN_FILE"

kill -TERM "$SERVICE_PID"
code=0
wait "$SERVICE_PID" || code=$?
SERVICE_PID=
[ "$code" -eq 0 ] || { cat "$WORK/service.log" >&2; fail "SIGTERM: exit code $code"; }
grep -q 'exiting' "$WORK/service.log" || fail "no drain message after SIGTERM"
say "SIGTERM: drained and exited 0"

say "passed: $IMAGE, ${IMAGE_MB} MB unpacked, built in $((BUILD_SECONDS / 60))m$((BUILD_SECONDS % 60))s"
