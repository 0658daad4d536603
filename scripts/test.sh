#!/usr/bin/env bash
# Set up, install the third-party-style example plugin (a real installed distribution) for the
# tests only, and Chromium for the browser tests, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The example plugin goes into .test-plugins/, which only the tests put on their path: the lab
# that scripts/run.sh starts from .venv lists the built-ins and what the user installed, never it.
rm -rf .test-plugins
.venv/bin/python -m pip install --quiet --no-deps --target .test-plugins ./tests/plugins/example
./scripts/install-browser.sh
# Every test runs (the slow tier too); the slowest are listed, to keep the suite's time in view.
exec .venv/bin/python -m pytest --durations=20 "$@"
