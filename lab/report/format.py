"""How the report writes numbers: percentages, sizes, times, and epsilons in the unit a reader
expects (k/255 when every budget is one, plain numbers otherwise). Text only, no markup: the
templates decide where it goes, and Jinja2 escapes it."""

from __future__ import annotations

import math

import numpy as np

from .model import eps_key


def finite(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and math.isfinite(value)


def pct(value) -> str:
    return f"{100 * value:.1f}%" if finite(value) else "n/a"


def num(value) -> str:
    return f"{value:.4g}" if finite(value) else "n/a"


def seconds(value) -> str:
    if not finite(value):
        return "n/a"
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


def heat(value) -> str | None:
    """The background of an accuracy cell: white at 100%, red at 0% (None when not a number)."""
    if not finite(value):
        return None
    t = 1.0 - min(max(float(value), 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * t) for c in (232, 96, 76))
    return f"background:rgb({r},{g},{b})"


def report_norm(report) -> str:
    """The report's threat model: the norm of its budgets ("inf" for reports made before it was set)."""
    return str((report.config or {}).get("norm", "inf"))


def eps_text(eps: float, norm: str = "inf") -> str:
    """A budget as people write it: grey levels (4/255) for L-inf, a plain number for L2 and L1."""
    return eps_key(eps) if norm == "inf" else f"{eps:.4g}"


def norm_name(norm: str) -> str:
    return {"inf": "L∞", "2": "L2", "1": "L1"}.get(norm, norm)


def bounded_linf_runs(report):
    """The evaluated runs with a budget in the report's norm: the ones that share the epsilon axis
    (L-inf unless the evaluation chose another threat model)."""
    norm = report_norm(report)
    return [r for r in report.runs if r.purpose == "evaluation" and r.eps is not None and r.norm == norm]


def attack_order(runs) -> list[str]:
    return list(dict.fromkeys(r.attack for r in runs))


def config_eps(report) -> list[float]:
    """The evaluation's epsilons, ascending (from the config, and from the runs if it lacks them)."""
    listed = report.config.get("eps") or []
    measured = [r.eps for r in bounded_linf_runs(report)]
    return sorted({float(e) for e in [*listed, *measured]})


class Units:
    """Epsilons and perturbation sizes of one report, all written the same way."""

    def __init__(self, report):
        eps = config_eps(report)
        self.norm = report_norm(report)
        self.norm_label = norm_name(self.norm)  # what the report's budgets measure        # Grey levels suit L-inf budgets only: an L2 or L1 size is a sum over pixels.
        self.in_255 = self.norm == "inf" and bool(eps) and all(eps_key(e).endswith("/255") for e in eps)

    def eps(self, value: float) -> str:
        return eps_key(value) if self.in_255 else f"{value:.4g}"

    def size(self, value: float) -> str:
        """A perturbation size, in the unit the epsilons are written in."""
        if not finite(value):
            return "n/a"
        return f"{value * 255:.3g}/255" if self.in_255 else f"{value:.4g}"


def params_text(params: dict, skip=("eps",)) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items() if k not in skip)


def detector_fit_text(origin: dict) -> str:
    """Where the detectors' fit images came from, in one phrase."""
    how = f"stratified by class, seed {origin.get('seed', 0)}"
    if origin.get("held_out"):
        return (f"{origin['images']} images held out of the evaluated '{origin['split']}' split "
                f"({how}; none of them is evaluated)")
    of = f" of its {origin['of']}" if origin.get("of", origin["images"]) != origin["images"] else ""
    return f"{origin['images']}{of} images of the '{origin['split']}' split ({how})"


def check_mark(check) -> str:
    """The short state of a sanity check, as the command line and the page print it."""
    return {"passed": "ok", "failed": "FLAG"}.get(check.state, "n/a")
