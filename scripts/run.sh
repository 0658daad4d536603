#!/usr/bin/env bash
# The main job: set up, then evaluate the built-in demo model (brain-tumor-cnn) on the built-in
# brain-MRI phantom (brain-tumor-phantom, test split) with the five seed attacks, and write the
# report to egide-report/ (report.html for people, report.json for scripts).
# Once the web lab lands, this starts the server on the demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/egide evaluate --out egide-report "$@"
echo "open egide-report/report.html in a browser to read the report"
