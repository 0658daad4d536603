"""Schemathesis against a real `egide serve` process: thousands of generated requests (the
OpenAPI document's enums name the installed plugins, models and data sets, so jobs are accepted
too), checked for server errors. The suite runs a bounded version (tests/test_web_fuzz.py).

    .venv/bin/python scripts/fuzz_api.py [--max-examples 400] [--seed 1]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from egide.lab.server_process import running_server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=400, help="generated cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    runner = Path(sys.executable).with_name("schemathesis")
    with running_server(Path(tempfile.mkdtemp(prefix="egide-fuzz-")) / "lab", args=("--workers", "1")) as server:
        out = subprocess.run(
            [str(runner), "run", server.url + "/api/v1/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", str(args.max_examples), "--seed", str(args.seed), "--workers", "1",
             "--request-timeout", "60", "--suppress-health-check", "all", "--no-color"],
            capture_output=True, text=True)
        log = Path(server.log_path).read_text()
    summary = out.stdout[out.stdout.find("SUMMARY"):] if "SUMMARY" in out.stdout else out.stdout[-4000:]
    print(summary)
    generated = re.search(r"(\d+) generated", out.stdout)
    errors = log.count("unhandled error on")
    print(f"requests generated: {generated.group(1) if generated else '?'}; "
          f"unhandled errors in the server log: {errors}; schemathesis exit status {out.returncode}")
    return 0 if out.returncode == 0 and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
