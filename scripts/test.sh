#!/usr/bin/env bash
# Set up, install the third-party-style example plugin (a real installed distribution) and
# Chromium for the browser tests, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh -e tests/plugins/example
./scripts/install-browser.sh
exec .venv/bin/python -m pytest "$@"
