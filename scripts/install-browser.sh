#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright drives it; no browser download).
# Needs root and apt-get; elsewhere it says what to install and the browser tests skip.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "installing chromium for the browser tests..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "note: /usr/bin/chromium is missing; install Debian's chromium package to run the browser tests" >&2
fi
