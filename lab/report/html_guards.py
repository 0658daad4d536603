"""The report's defense and detector sections (see core/report_html.py for the page itself).

Defenses: every number side by side, non-adaptive and adaptive, with a flag where the gap says
the defense only hides its gradient. Detectors: ROC AUC per attack and ε, true-positive rate at
5% false positives, what the fitted threshold does on the test set, ROC curves, and for
supervised detectors the transfer table (fitted on one attack, tested on every other).
"""

from __future__ import annotations

import math

from egide.lab.evaluation.pipeline import eps_key
from egide.lab.report.html import (
    MARKERS,
    PALETTE,
    _acc_cell,
    _config_eps,
    _e,
    _eps_text,
    _mpl_text,
    _num,
    _pct,
    _seconds,
    _svg_plot,
)

GOOD_AUC = 0.95  # the level the issue and the literature on medical images call strong


# ---- defenses ---------------------------------------------------------------------------------
def defenses_section(report) -> str:
    if not report.defenses:
        return ""
    eps_values = [e for e in _config_eps(report)
                  if any(eps_key(e) in d.worst_case for d in report.defenses)]
    head = "".join(f"<th>ε = {_e(_eps_text(report, e))}</th>" for e in eps_values)
    rows = [
        f"<tr><th>no defense</th>{_acc_cell(report.clean_accuracy)}"
        + "".join(_acc_cell(report.worst_case.get(eps_key(e))) for e in eps_values) + "</tr>"
    ]
    for d in report.defenses:
        cells = "".join(_pair_cell(d.worst_case.get(eps_key(e))) for e in eps_values)
        flag = ' <a class="badge flag" href="#defense-{0}">masks gradients</a>'.format(_e(d.name)) if d.masking else ""
        rows.append(f"<tr><th>{_e(d.name)}{flag}<div class=\"params\">{_e(_params(d.config))}</div></th>"
                    f"{_acc_cell(d.clean_accuracy)}{cells}</tr>")
    details = "\n".join(_defense_detail(report, d) for d in report.defenses)
    plot = _defense_plot(report, eps_values) if eps_values else ""
    return f"""<section id="defenses">
<h2>Defenses: non-adaptive and adaptive</h2>
<p class="lead">Each preprocessing defense is attacked twice. <strong>Non-adaptive</strong>: the attack
differentiates the defended model as it is, so a defense that breaks gradients (a quantiser, JPEG)
or draws noise looks strong. <strong>Adaptive</strong> (Athalye et al. 2018): non-differentiable steps
are bypassed on the backward pass (BPDA) and random ones averaged over draws (EOT,
{_e(report.config.get("eot_samples", "?"))} per step). Robust accuracy is always what the real defended
model answers. <strong>Only the adaptive number is a robustness claim.</strong></p>
<table class="matrix"><thead><tr><th>worst case over L∞ attacks</th><th>clean</th>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="note">Cells read <strong>adaptive</strong> / <span class="muted">non-adaptive</span>.</p>
{plot}
{details}
</section>"""


def _pair_cell(pair) -> str:
    if not pair:
        return '<td class="na">—</td>'
    cell = _acc_cell(pair["adaptive"])
    return cell.replace("</td>", f' <span class="muted">/ {_pct(pair["non_adaptive"])}</span></td>')


def _defense_detail(report, d) -> str:
    rows = []
    for r in d.runs:
        budget = "none (minimal L2)" if r.eps is None else _eps_text(report, r.eps)
        gap = r.non_adaptive - r.adaptive
        rows.append(
            f"<tr><th>{_e(r.attack)}</th><td>{_e(budget)}</td>{_acc_cell(r.non_adaptive)}"
            f"{_acc_cell(r.adaptive)}<td class=\"num{' over' if gap > 0.10 else ''}\">"
            f"{100 * gap:+.1f} pts</td><td class=\"num\">{_seconds(r.seconds)}</td></tr>"
        )
    masking = (f'<p class="banner flag">{_e(d.masking)}</p>' if d.masking else
               '<p class="note">Non-adaptive and adaptive numbers agree within 10 points: no sign '
               "that this defense only hides its gradient.</p>")
    return f"""<h3 id="defense-{_e(d.name)}">{_e(d.name)} <span class="muted">· {_e(d.title)} · adaptive view: {_e(d.view)} · clean {_pct(d.clean_accuracy)}</span></h3>
{masking}
<table class="runs"><thead><tr><th>attack</th><th>ε</th><th>non-adaptive</th><th>adaptive</th>
<th>gap</th><th>time</th></tr></thead><tbody>{"".join(rows)}</tbody></table>"""


def _defense_plot(report, eps_values) -> str:
    in_255 = all(eps_key(e).endswith("/255") for e in eps_values)
    scale = 255.0 if in_255 else 1.0

    def draw(fig, ax):
        xs = [e * scale for e in eps_values]
        base = [report.worst_case.get(eps_key(e)) for e in eps_values]
        if all(v is not None for v in base):
            ax.plot(xs, [100 * v for v in base], color="black", linewidth=2.6, marker="o",
                    label="no defense")
        for i, d in enumerate(report.defenses):
            color, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
            pairs = [d.worst_case.get(eps_key(e)) for e in eps_values]
            if any(p is None for p in pairs):
                continue
            ax.plot(xs, [100 * p["adaptive"] for p in pairs], color=color, marker=marker,
                    linewidth=1.8, label=_mpl_text(f"{d.name} (adaptive)"))
            ax.plot(xs, [100 * p["non_adaptive"] for p in pairs], color=color, marker=marker,
                    linewidth=1.2, linestyle="--", alpha=0.8,
                    label=_mpl_text(f"{d.name} (non-adaptive)"))
        ax.set_xticks(xs)
        ax.set_xticklabels([_mpl_text(_eps_text(report, e)) for e in eps_values])
        ax.set_xlim(0, max(xs) * 1.06)
        ax.set_ylim(-3, 103)
        ax.set_xlabel("ε, L∞ budget")
        ax.set_ylabel("worst-case robust accuracy (%)")
        ax.grid(True, color="#e4e4e4", linewidth=0.8)
        fig.legend(loc="outside right upper", frameon=False)

    svg = _svg_plot(draw, (8.6, 4.0), "defenses",
                    "Worst-case robust accuracy versus epsilon for each defense, adaptive and not")
    return (f'<figure class="plot">{svg}<figcaption>Solid lines: adaptive attacks; dashed: the same '
            "attacks without adaptation. A dashed line far above its solid one is a defense that "
            "hides gradients.</figcaption></figure>")


# ---- detectors --------------------------------------------------------------------------------
def detectors_section(report) -> str:
    if not report.detectors:
        return ""
    det_eps = report.detectors[0].detection_eps
    attacks = list(dict.fromkeys(r.attack for d in report.detectors for r in d.runs))
    head = "".join(f"<th>{_e(a)}</th>" for a in attacks)
    rows = []
    for d in report.detectors:
        at = {r.attack: r for r in d.runs if r.eps is None or math.isclose(r.eps, det_eps)}
        cells = "".join(_auc_cell(at[a].auc if a in at else None) for a in attacks)
        aucs = [at[a].auc for a in attacks if a in at]
        single = (_auc_cell(min(aucs)) if aucs and not d.supervised
                  else '<td class="na" title="one fit per attack">—</td>')
        kind = "supervised: fitted on each attack" if d.supervised else "one fit, one threshold"
        rows.append(f"<tr><th>{_e(d.name)}<div class=\"params\">{_e(kind)}</div></th>{cells}{single}"
                    f"<td class=\"num\">{_seconds(d.fit_seconds)}</td>"
                    f"<td class=\"num\">{d.score_rate:,.0f}/s</td></tr>")
    details = "\n".join(_detector_detail(report, d) for d in report.detectors)
    return f"""<section id="detectors">
<h2>Detectors</h2>
<p class="lead">Positives are adversarial images that fooled the model (from images it classified
correctly); negatives are the {_e(report.data.get("images", "?"))} clean test images. Detectors were
fitted on up to {_e(report.config.get("detector_fit_limit") or "all")} images of the
'{_e(report.config.get("detector_fit_split", "val"))}' split, never on the images they are scored on.</p>
<table class="matrix"><thead><tr><th>ROC AUC at ε = {_e(_eps_text(report, det_eps))}</th>{head}
<th>lowest (one threshold)</th><th>fit time</th><th>scoring</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
<p class="note">AUC 0.5 is chance, 1.0 perfect; cells at or above {GOOD_AUC} are bold. "Lowest" is the
weakest attack for a detector fitted once with one threshold for all of them.</p>
{details}
</section>"""


def _auc_cell(value) -> str:
    if value is None:
        return '<td class="na" title="no adversarial example fooled the model">—</td>'
    strong = ' style="font-weight:700"' if value >= GOOD_AUC else ""
    return f'<td class="num"{strong}>{value:.3f}</td>'


def _detector_detail(report, d) -> str:
    rows = []
    for r in sorted(d.runs, key=lambda r: (r.attack, r.eps is None, r.eps or 0.0)):
        budget = "none (minimal L2)" if r.eps is None else _eps_text(report, r.eps)
        rows.append(
            f"<tr><th>{_e(r.attack)}</th><td>{_e(budget)}</td>{_auc_cell(r.auc)}"
            f'<td class="num">{_pct(r.tpr_at_fpr)}</td><td class="num">{_pct(r.detection_rate)}</td>'
            f'<td class="num">{_pct(r.false_positive_rate)}</td><td class="num">{r.positives}</td></tr>'
        )
    fpr = _pct(d.config.get("params", {}).get("fpr", 0.05))
    transfer = _transfer_table(d) if d.supervised and d.transfer else ""
    note = f'<p class="banner warn">{_e(d.note)}</p>' if d.note else ""
    return f"""<h3>{_e(d.name)} <span class="muted">· {_e(d.title)} · {_e(_params(d.config))}</span></h3>
{note}
{_roc_plot(report, d)}
<table class="runs"><thead><tr><th>attack</th><th>ε</th><th>ROC AUC</th><th>TPR at 5% FPR</th>
<th>detected at threshold</th><th>clean flagged at threshold</th><th>positives</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p class="note">The threshold was fixed at fit time for a {fpr} false-positive rate on the fit
images; "clean flagged" is what it does on the test images.</p>
{transfer}"""


def _roc_plot(report, d) -> str:
    det_eps = d.detection_eps
    runs = [r for r in d.runs if r.eps is None or math.isclose(r.eps, det_eps)]
    if not runs:
        return '<p class="note">No attack fooled the model: no ROC curve to draw.</p>'

    def draw(fig, ax):
        for i, r in enumerate(runs):
            fpr, tpr = zip(*r.roc) if r.roc else ((0, 1), (0, 1))
            budget = "" if r.eps is None else f" ε={_eps_text(report, r.eps)}"
            ax.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], linewidth=1.8,
                    label=_mpl_text(f"{r.attack}{budget} (AUC {r.auc:.3f})"))
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
        ax.axvline(0.05, color="#555555", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false-positive rate (clean images flagged)")
        ax.set_ylabel("true-positive rate (adversarials flagged)")
        ax.grid(True, color="#e4e4e4", linewidth=0.8)
        ax.legend(loc="lower right", frameon=False, fontsize=9)

    svg = _svg_plot(draw, (5.6, 4.4), f"roc-{d.name}", f"ROC curves of {d.name}, one per attack")
    return (f'<figure class="plot roc">{svg}<figcaption>ROC of {_e(d.name)} at ε = '
            f"{_e(_eps_text(report, det_eps))} (C&amp;W unbounded); the dashed line marks 5% false "
            "positives.</figcaption></figure>")


def _transfer_table(d) -> str:
    tested = list(dict.fromkeys(a for row in d.transfer.values() for a in row))
    head = "".join(f"<th>{_e(a)}</th>" for a in tested)
    rows = "".join(
        f"<tr><th>{_e(fit)}</th>" + "".join(_auc_cell(row.get(a)) for a in tested) + "</tr>"
        for fit, row in d.transfer.items()
    )
    return f"""<h4>Transfer: fitted on one attack (rows), tested on each (columns), ROC AUC</h4>
<table class="matrix"><thead><tr><th>fitted on \\ tested on</th>{head}</tr></thead><tbody>{rows}</tbody></table>
<p class="note">High values off the diagonal mean the detector learned something about adversarial
examples in general; values near 0.5 mean it only recognises the attack it was fitted on.</p>"""


def _params(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in (config.get("params") or {}).items()) or "defaults"
