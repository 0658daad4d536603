"""Writing a report to disk: every file appears whole or not at all.

Each file is written under a temporary name in the destination folder and renamed into place
(an atomic replace on POSIX): a run interrupted with Ctrl-C, or a crash while rendering,
leaves the previous report (if any) untouched and never a half-written one.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

log = logging.getLogger("egide.report")


def write_report(report, out_dir) -> dict[str, str]:
    """Write report.json (every number) and report.html (for people) into out_dir."""
    from .html import render_html  # the one place a renderer is imported

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Render everything first; only then touch the destination files.
    contents = {
        "report.json": json.dumps(json_safe(report.to_dict()), indent=2),
        "report.html": render_html(report),
    }
    written = {}
    for name, text in contents.items():
        written[name] = str(_atomic_write(out / name, text))
    return written


def write_card(card, out_dir) -> dict[str, str]:
    """Write a robustness card beside its report: card.json (the data, to diff two cards),
    card.html and card.pdf (both rendered from it)."""
    from .card_html import render_card_html
    from .card_pdf import render_card_pdf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    contents = {"card.json": card.to_json(), "card.html": render_card_html(card), "card.pdf": render_card_pdf(card)}
    return {name: str(_atomic_write(out / name, data)) for name, data in contents.items()}


def write_figures(report, out_dir) -> list[str]:
    """The report's figures as PNG files, for pages that show them beside other things:
    robustness.png and roc-<detector>.png. A figure that cannot be drawn is left out and
    logged, never the caller's failure (report.html holds every figure anyway)."""
    from . import plots

    out = Path(out_dir)
    wanted = [("robustness.png", lambda path: plots.robustness_png(report, path))]
    wanted += [(f"roc-{d.name}.png", lambda path, d=d: plots.roc_png(report, d, path))
               for d in report.detectors]
    written = []
    for name, draw in wanted:
        try:
            if draw(out / name):
                written.append(name)
        except Exception:
            log.exception("could not draw %s", name)
    return written


def _atomic_write(path: Path, data: str | bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def json_safe(value):
    """NaN/Inf are not JSON: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
