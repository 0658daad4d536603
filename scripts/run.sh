#!/usr/bin/env bash
# The main job: set up, then start the Égide web lab on the built-in demo (the brain-tumor-cnn
# model and the brain-tumor-phantom data) at http://127.0.0.1:8000/. Extra arguments go to
# `egide serve` (e.g. --port 9000). Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/egide serve --host 127.0.0.1 --port "${EGIDE_PORT:-8000}" --instance egide-instance "$@"
