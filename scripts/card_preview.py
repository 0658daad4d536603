"""Regenerate docs/robustness-card-demo.png: the demo's robustness card, first page.

    .venv/bin/python scripts/card_preview.py [--out DIR]

Runs `egide evaluate` on the demo (the whole test split, the default attacks, the fast suite:
about 21 minutes on 2 CPU cores), then `egide card --report` on it, and renders the PDF's first
page with PDFium, the engine of Chrome's PDF viewer. It prints how long the evaluation took and how
long the card took beyond it. `--reuse` skips the evaluation when the folder already holds one;
`--certify` adds the randomized-smoothing lower bound (minutes more).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREVIEW = ROOT / "docs" / "robustness-card-demo.png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-card", help="folder for the report and the card")
    parser.add_argument("--reuse", action="store_true", help="use the evaluation already in --out, if any")
    parser.add_argument("--certify", action="store_true", help="add the certified lower bound")
    args = parser.parse_args()
    egide = [sys.executable, "-m", "egide.lab.cli"]
    started = time.perf_counter()
    if not (args.reuse and (Path(args.out) / "report.json").is_file()):
        subprocess.run([*egide, "evaluate", "--suite", "fast", "--out", args.out, "--no-progress"], check=True)
    evaluated = time.perf_counter()
    subprocess.run([*egide, "card", "--report", args.out, *(["--certify"] if args.certify else [])], check=True)
    carded = time.perf_counter()

    import pypdfium2

    page = pypdfium2.PdfDocument(str(Path(args.out) / "card.pdf"))[0]
    page.render(scale=1.5).to_pil().save(PREVIEW)
    print(f"evaluation {evaluated - started:.0f} s; card {carded - evaluated:.1f} s beyond it (a fresh process: "
          f"imports included); first page: {PREVIEW.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
