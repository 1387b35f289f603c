# syntax=docker/dockerfile:1
#
# llm-service: the gateway binary, with its default handler component
# embedded, on Debian slim as a non-root user.
#
#   docker build -t llm-service .          (about 8 minutes cold on 2 cores)
#   docker run --rm -p 127.0.0.1:6001:6001 llm-service
#
# scripts/container-test.sh builds this file with buildah where no Docker
# daemon runs, and runs the result's own entrypoint from its root filesystem.

# The toolchain rust-toolchain.toml pins.
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The toolchain file first: its layer (the wasm32-wasip2 target) survives
# source changes.
COPY rust-toolchain.toml ./
RUN rustup toolchain install && rustup target list --installed
COPY Cargo.toml Cargo.lock ./
COPY host host
COPY components components
COPY wit wit
COPY tests/support tests/support
COPY bench bench
COPY docs/openapi.json docs/admin-openapi.json docs/
# Cache mounts keep the crates.io downloads and the target directory between
# builds on one machine (BuildKit and buildah both honour them); the binary
# is copied out because the target mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p llm-service \
    && cp target/release/llm-service /usr/local/bin/llm-service

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
# A fixed, unprivileged uid, so Kubernetes' runAsNonRoot can check it.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent llm-service \
    && install -d -o llm-service -g llm-service -m 0700 /var/cache/llm-service
COPY --from=builder /usr/local/bin/llm-service /usr/local/bin/llm-service
USER 10001:10001
# In a container the service is reached through the container's network:
# both ports listen on every interface of it, and compose.yaml publishes
# them on the host's loopback only. Compiled components are cached in a
# directory of the image's own (a volume or emptyDir where the root is
# read-only).
ENV LLM_SERVICE_BIND=0.0.0.0 \
    LLM_SERVICE_PORT=6001 \
    ADMIN_BIND=0.0.0.0 \
    COMPILED_CACHE_DIR=/var/cache/llm-service
EXPOSE 6001
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/llm-service", "probe"]
ENTRYPOINT ["/usr/local/bin/llm-service"]
