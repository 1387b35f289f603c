#!/usr/bin/env bash
# Installs what the tests run in a browser and in node: Debian's chromium
# (the browser: npm's playwright cannot download its own here) and
# playwright-core for the console's tests, pinned by
# tests/console/package-lock.json; the official npm clients the dialect
# tests drive, pinned by tests/clients/package-lock.json. Safe to run
# again: each step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if [ ! -d tests/console/node_modules/playwright-core ]; then
    npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
fi
if [ ! -d tests/clients/node_modules/@anthropic-ai/sdk ] || [ ! -x tests/clients/node_modules/.bin/claude ]; then
    npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
fi
