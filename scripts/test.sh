#!/usr/bin/env bash
# Set up, install the third-party-style example plugin (a real installed distribution), and
# run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh -e tests/plugins/example
exec .venv/bin/python -m pytest "$@"
