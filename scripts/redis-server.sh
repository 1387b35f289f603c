#!/usr/bin/env bash
# Installs redis-server (the KeyDB stand-in the tests and the bench start
# themselves) from Debian's packages when it is missing.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
