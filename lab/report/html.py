"""The evaluation report as one self-contained HTML page: `render_html(report) -> str`.

The page is rendered from Jinja2 templates (`templates/report.html`, one partial per section),
with autoescaping on: every string from a user (class names, paths, plugin names, parameters)
is escaped by the template engine, never by hand. This module prepares what the templates
cannot compute themselves — the figures, the gallery images, tables grouped and ordered — and
reads the report's data model only. Everything is inline (CSS, SVG plots, PNG images as data
URIs), so the page opens offline and never reaches the network: a Content-Security-Policy
forbids any fetch and any script.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import format as fmt
from . import plots
from egide.lab.guard.evaluation import FALL_GAP
from egide.lab.data.sampling import Subset

from .model import eps_key
from .volume_views import most_perturbed_slice

IMAGE_WIDTH = 128  # CSS pixels for each gallery image, whatever its resolution
LINF_TOLERANCE = 1e-5  # float32 rounding, relative; a larger max L-inf breaks the budget
GOOD_AUC = 0.95  # the level the literature on medical images calls a strong detector
MASKING_GAP = 0.10  # a defense's non-adaptive accuracy this far above its adaptive one is flagged

NAV = (
    ("sanity", "Sanity checks"),
    ("suite", "Reference suite"),
    ("robustness", "Robust accuracy vs ε"),
    ("tables", "Tables"),
    ("per-class", "Per class"),
    ("gallery", "Gallery"),
    ("minimal", "Minimal perturbations"),
    ("defenses", "Defenses"),
    ("detectors", "Detectors"),
    ("config", "Configuration"),
)


@functools.cache
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a misspelt name in a template is an error, not a blank
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=fmt.pct, num=fmt.num, seconds=fmt.seconds, heat=fmt.heat)
    env.globals.update(finite=fmt.finite, good_auc=GOOD_AUC, image_width=IMAGE_WIDTH)
    return env


def render_html(report) -> str:
    """The whole page for `report` (an `egide.lab.report.model.Report`)."""
    from markupsafe import Markup

    units = fmt.Units(report)
    context = {
        "report": report,
        "units": units,
        "svg": Markup,  # figures are made here, by matplotlib, with their text escaped
        "header": _header(report, units),
        "robustness": _robustness(report),
        "tables": _tables(report, units),
        "per_class": _per_class(report),
        "gallery": _gallery(report, units),
        "minimal": _minimal(report, units),
        "defenses": _defenses(report, units) if report.defenses else None,
        "detectors": _detectors(report, units) if report.detectors else None,
        "suite": _suite(report, units) if report.suite is not None else None,
        "config_json": json.dumps(report.config, indent=2, sort_keys=False, default=str),
    }
    return _environment().get_template("report.html").render(context)


# ---- header ---------------------------------------------------------------------------------
def _header(report, units) -> dict:
    model, env = report.model, report.environment
    created = getattr(report, "created", None)
    measured = [e for e in fmt.config_eps(report) if eps_key(e) in report.worst_case]
    present = {"defenses": bool(report.defenses), "detectors": bool(report.detectors),
               "suite": report.suite is not None}
    return {
        "title": f"Égide robustness report: {model.get('name', 'model')}",
        "shape": "×".join(str(d) for d in model.get("input_shape", [])) or "?",
        "range": model.get("input_range") or report.config.get("input_range") or report.config.get("clip") or (0.0, 1.0),
        "range_source": model.get("input_range_source") or "declared",
        "when": f"evaluated {created}" if created else
                f"rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "versions": [(k, v) for k, v in env.items() if k not in ("plugins", "platform")],
        "plugins": list((env.get("plugins") or {}).items()),
        "flagged": [c for c in report.sanity if c.passed is False],
        "checks_ran": [c for c in report.sanity if c.ran],
        "checks_na": [c for c in report.sanity if not c.ran],
        "subset": Subset.from_dict(report.data["subset"]) if report.data.get("subset") else None,
        "detector_fit": fmt.detector_fit_text(report.data["detector_fit"]) if report.data.get("detector_fit") else None,
        "worst": (report.worst_case[eps_key(measured[-1])], units.eps(measured[-1])) if measured else None,
        "nav": [(anchor, title) for anchor, title in NAV if present.get(anchor, True)],
    }


# ---- the reference suite ---------------------------------------------------------------------
def _suite(report, units) -> dict:
    s = report.suite
    rows = []
    for r in s.runs:
        labels, counts = np.unique(r.broken_by[r.broken_by != ""], return_counts=True)
        rows.append({"eps": units.eps(r.eps), "after": r.after, "robust": r.robust_accuracy,
                     "first": dict(zip(labels.tolist(), counts.tolist())), "masking": r.masking,
                     "seconds": sum(r.seconds)})
    return {"suite": s, "rows": rows, "notes": [m.note for m in s.members if m.note]}


# ---- robust accuracy versus epsilon ---------------------------------------------------------------
def _robustness(report) -> dict:
    runs = fmt.bounded_linf_runs(report)
    evaluated = [r for r in report.runs if r.purpose == "evaluation"]
    minimal = fmt.attack_order(r for r in evaluated if r.eps is None)
    other_norms = sorted({r.attack for r in evaluated if r.eps is not None and r.norm != fmt.report_norm(report)})
    return {
        "svg": plots.robustness_svg(report, runs) if runs else None,
        "minimal": minimal,
        "other_norms": other_norms,
    }


# ---- tables -----------------------------------------------------------------------------------
def _tables(report, units) -> dict:
    runs = fmt.bounded_linf_runs(report)
    eps_values = sorted({r.eps for r in runs})
    by = {(r.attack, r.eps): r for r in runs}
    n = int(report.data.get("images") or 0)
    return {
        "eps": eps_values,
        "matrix": [(name, [by[(name, e)].robust_accuracy if (name, e) in by else None for e in eps_values])
                   for name in fmt.attack_order(runs)],
        "worst": [report.worst_case.get(eps_key(e)) for e in eps_values],
        "interval": 196 * math.sqrt(0.25 / n) if n else None,
        "evaluated": _run_groups(report, units, [r for r in report.runs if r.purpose == "evaluation"]),
        "sanity": _run_groups(report, units, [r for r in report.runs if r.purpose == "sanity"]),
    }


def _run_groups(report, units, runs) -> list[dict]:
    """Runs attack by attack (in the order they ran), epsilon ascending, minimal runs last; an
    attack's name and parameters are shown once for its rows."""
    groups = []
    for name in fmt.attack_order(runs):
        mine = sorted((r for r in runs if r.attack == name), key=lambda r: (r.eps is None, r.eps or 0.0))
        rows = []
        for r in mine:
            if r.eps is None:
                budget = f"none (minimal L{'2' if r.norm == '2' else '∞'})"
            elif r.purpose == "sanity":
                budget = f"{fmt.num(r.eps)} (whole range)"
            else:
                budget = units.eps(r.eps) + ("" if r.norm == "inf" else f" ({fmt.norm_name(r.norm)} budget)")
            # An L-inf run whose perturbation exceeds its budget is a bug in the attack: say so.
            over = (r.eps is not None and r.norm == "inf"
                    and r.linf_max > r.eps * (1 + LINF_TOLERANCE) + 1e-7)
            size = units.size(r.linf_max) if r.purpose == "evaluation" else fmt.num(r.linf_max)
            rows.append({"run": r, "budget": budget, "over": over, "linf": size})
        groups.append({"name": name, "params": fmt.params_text(mine[0].params), "rows": rows})
    return groups


# ---- per class --------------------------------------------------------------------------------
def _per_class(report) -> dict:
    names = list(report.data.get("class_names", [])) or list(report.worst_case_per_class)
    eps_values = [e for e in fmt.config_eps(report) if eps_key(e) in report.worst_case]
    keys = [eps_key(e) for e in eps_values]
    rows, means = [], {}
    for name in names:
        per_eps = report.worst_case_per_class.get(name, {})
        values = [per_eps.get(k) for k in keys]
        finite = [v for v in values if fmt.finite(v)]
        if finite:
            means[name] = sum(finite) / len(finite)
        rows.append({"name": name, "count": report.data.get("class_counts", {}).get(name, "?"),
                     "clean": report.clean_per_class.get(name), "values": values})
    return {
        "names": names,
        "eps": eps_values,
        "rows": rows,
        "overall": [report.worst_case.get(k) for k in keys],
        "fragile": _fragile(means) if keys else None,
    }


def _fragile(means: dict[str, float]) -> dict:
    """The most fragile class and the runner-up, or why there is none."""
    if len(means) < 2:
        return {"reason": "Too few classes with images to compare."}
    (weak, low), (runner_up, next_low) = sorted(means.items(), key=lambda kv: kv[1])[:2]
    if math.isclose(low, next_low, abs_tol=1e-9):
        return {"reason": "No single class is more fragile than the others (equal mean robust "
                          "accuracy over ε)."}
    return {"reason": None, "weak": weak, "low": low, "runner_up": runner_up, "next_low": next_low}


# ---- gallery --------------------------------------------------------------------------------
def _gallery(report, units) -> dict:
    items = report.gallery
    lo, hi = (report.model.get("clip") or (0.0, 1.0))[:2]  # images live in [0, 1]
    attacks = {(g.attack, g.eps) for g in items}
    single = None
    if len(attacks) == 1:
        attack, eps = next(iter(attacks))
        single = {"attack": attack, "eps": units.eps(eps)}
    return {"single": single, "cards": [_card(g, float(lo), float(hi), units) for g in items]}


def _card(g, lo: float, hi: float, units) -> dict:
    clean = np.asarray(g.clean, dtype=np.float64)
    adv = np.asarray(g.adversarial, dtype=np.float64)
    span = hi - lo
    delta = (adv - clean) / span
    peak = float(np.abs(delta).max()) if delta.size else 0.0
    # Map [-peak, +peak] onto [0, 1] around mid-grey; the factor is how much it was magnified.
    factor = 0.5 / peak if peak > 0 else 0.0
    worst = None
    if clean.ndim == 4:  # a volume: its mid-slices above, the axial slice it was changed most in below
        k = most_perturbed_slice(delta)
        worst = {"slice": k + 1, "depth": clean.shape[0], "clean": plots.png_uri((clean[k] - lo) / span),
                 "adversarial": plots.png_uri((adv[k] - lo) / span),
                 "perturbation": plots.png_uri(0.5 + delta[k] * factor)}
    return {
        "item": g,
        "worst": worst,
        "flipped": g.adv_pred != g.label,
        "eps": units.eps(g.eps),
        "factor": f"{factor:.3g}" if peak > 0 else None,
        "peak": units.size(peak * span),
        "clean": plots.png_uri((clean - lo) / span),
        "adversarial": plots.png_uri((adv - lo) / span),
        "perturbation": plots.png_uri(0.5 + delta * factor),
    }


# ---- minimal perturbations ------------------------------------------------------------------
def _minimal(report, units) -> list[dict]:
    images = int(report.data.get("images") or 0)
    correct = round(report.clean_accuracy * images) if fmt.finite(report.clean_accuracy) else 0
    out = []
    for found in report.minimal:
        values = plots.finite_values(found.values)
        entry = {"found": found, "count": int(values.size), "correct": correct, "svg": None}
        if values.size:
            median, mean = float(np.median(values)), float(values.mean())
            entry.update(svg=plots.minimal_svg(found, values, median, mean), median=f"{median:.3g}",
                         mean=f"{mean:.3g}", low=f"{values.min():.3g}", high=f"{values.max():.3g}",
                         scale=_l2_scale(report, units) if found.norm == "2" else None)
        out.append(entry)
    return out


def _l2_scale(report, units) -> dict | None:
    """What an L-inf budget means in L2, to read an L2 histogram against the ε of the plot."""
    eps = fmt.config_eps(report)
    shape = report.model.get("input_shape") or []
    if not eps or not shape:
        return None
    d = int(np.prod(shape))
    return {"eps": units.eps(max(eps)), "l2": f"{max(eps) * math.sqrt(d):.3g}", "d": d}


# ---- defenses ---------------------------------------------------------------------------------
def _defenses(report, units) -> dict:
    eps_values = [e for e in fmt.config_eps(report)
                  if any(eps_key(e) in d.worst_case for d in report.defenses)]
    return {
        "eps": eps_values,
        "keys": [eps_key(e) for e in eps_values],
        "svg": plots.defenses_svg(report, eps_values) if eps_values else None,
        "details": [
            {"defense": d, "params": fmt.params_text(d.config.get("params"), skip=()) or "defaults",
             "runs": [{"run": r, "gap": r.non_adaptive - r.adaptive,
                       "budget": "none (minimal perturbation)" if r.eps is None else units.eps(r.eps)}
                      for r in d.runs]}
            for d in report.defenses
        ],
        "masking_gap": MASKING_GAP,
    }


# ---- detectors --------------------------------------------------------------------------------
def _detectors(report, units) -> dict:
    det_eps = report.detectors[0].detection_eps
    attacks = list(dict.fromkeys(r.attack for d in report.detectors for r in d.runs))
    rows = []
    for d in report.detectors:
        at = {r.attack: r for r in d.runs if r.eps is None or math.isclose(r.eps, det_eps)}
        aucs = [at[a].auc for a in attacks if a in at]
        rows.append({"detector": d, "aucs": [at[a].auc if a in at else None for a in attacks],
                     "lowest": min(aucs) if aucs and not d.supervised else None})
    details = []
    for d in report.detectors:
        runs = sorted(d.runs, key=lambda r: (r.attack, r.eps is None, r.eps or 0.0))
        tested = list(dict.fromkeys(a for row in d.transfer.values() for a in row))
        details.append({
            "detector": d,
            "params": fmt.params_text(d.config.get("params"), skip=()) or "defaults",
            "svg": plots.roc_svg(report, d) if plots.roc_runs(d) else None,
            "runs": [{"run": r, "budget": "none (minimal perturbation)" if r.eps is None
                      else units.eps(r.eps)} for r in runs],
            "fpr": fmt.pct(d.config.get("params", {}).get("fpr", 0.05)),
            "transfer": ({"tested": tested, "rows": [(fit, [row.get(a) for a in tested])
                                                     for fit, row in d.transfer.items()]}
                         if d.supervised and d.transfer else None),
        })
    return {"eps": units.eps(det_eps), "attacks": attacks, "rows": rows, "details": details,
            "guard": _guard_table(report, units)}


def _guard_table(report, units) -> dict | None:
    """Guarded robust accuracy per detector and budget: adaptive / non-adaptive pairs."""
    guarded = [d for d in report.detectors if d.guard is not None]
    if not guarded:
        return None
    budgets = list(dict.fromkeys(r.eps for d in guarded for r in d.guard.runs))
    rows = []
    for d in guarded:
        pairs = {plain.eps: (plain, adaptive) for plain, adaptive in d.guard.pairs()}
        falls = d.guard.falls()
        rows.append({
            "detector": d, "falls": [e for e in budgets if falls.get(e)],
            "cells": [{"non_adaptive": pairs[e][0].guarded_robust_accuracy,
                       "adaptive": pairs[e][1].guarded_robust_accuracy if pairs[e][1] else None}
                      if e in pairs else None for e in budgets],
            "runs": [{"run": r, "budget": units.eps(r.eps)} for r in d.guard.runs],
            "through": next((r.through for r in d.guard.runs if r.through), None),
            "threshold_fails": d.guard.threshold_fails(),
        })
    return {"budgets": [units.eps(e) for e in budgets], "rows": rows, "fall_gap": FALL_GAP,
            "model_alone": [report.worst_case.get(eps_key(e)) for e in budgets]}
