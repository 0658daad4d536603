#!/usr/bin/env bash
# The main job: set up, then run the quick start (data, model, every attack from the CLI).
# Once the web lab lands, this starts the server on the built-in demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python examples/quickstart.py "$@"
