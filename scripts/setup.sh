#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv at the repo root and install Égide into it,
# with the versions pinned in requirements.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c requirements.lock -e ".[test,onnx]" "$@"
# Older test commands installed the tests' example plugin here; it belongs to the tests only.
if .venv/bin/python -m pip show --quiet egide-example-plugin >/dev/null 2>&1; then
    .venv/bin/python -m pip uninstall --quiet --yes egide-example-plugin
fi
