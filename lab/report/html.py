"""The evaluation report as one self-contained HTML page: `render_html(report) -> str`.

Everything is inline (CSS, SVG plots drawn by matplotlib, PNG images as data URIs), so the page
opens offline, can be mailed or archived as one file, and never reaches the network: a
Content-Security-Policy forbids any fetch and any script. Sections, in reading order:

    header          model, data, clean accuracy, environment, what "robust accuracy" means
    sanity checks   pass/flag per check (how gradient masking is caught), before any number
    plot            robust accuracy vs epsilon: one line per attack, the worst case, clean
    tables          attacks x epsilons, the per-run details, the unbounded sanity run apart
    per class       worst-case robust accuracy per class and epsilon, as a heat map
    gallery         clean / adversarial / amplified perturbation, with predictions
    C&W             distribution of the minimal L2 perturbations
    defenses        non-adaptive and adaptive robust accuracy side by side (report_html_guards)
    detectors       ROC AUC per attack and ε, ROC curves, transfer table (report_html_guards)
    footer          the configuration as JSON, to replay the run

Every string that comes from a user (class names, paths, plugin names, parameters) goes
through `_e` (html.escape) before it is inserted.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import datetime, timezone

import numpy as np

from egide.lab.evaluation.pipeline import eps_key

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C6D1F", "#7F7F7F")
IMAGE_WIDTH = 128  # CSS pixels for each gallery image, whatever its resolution
LINF_TOLERANCE = 1e-5  # float32 rounding, relative; a larger max L-inf breaks the budget


def render_html(report) -> str:
    """The whole page for `report` (an `egide.lab.evaluation.pipeline.Report`)."""
    from egide.lab.report.html_guards import defenses_section, detectors_section

    sections = [
        _header(report),
        _sanity_section(report),
        _plot_section(report),
        _tables_section(report),
        _per_class_section(report),
        _gallery_section(report),
        _cw_section(report),
        defenses_section(report),
        detectors_section(report),
        _footer(report),
    ]
    title = f"Égide robustness report: {report.model.get('name', 'model')}"
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        # No fetch of any kind and no script: the page is data, even if a string slipped through.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )


# ---- 1. header ------------------------------------------------------------------------------
def _header(report) -> str:
    model, data, env = report.model, report.data, report.environment
    names = list(data.get("class_names", []))
    counts = data.get("class_counts", {})
    shape = "×".join(str(d) for d in model.get("input_shape", [])) or "?"
    clip = model.get("clip") or report.config.get("clip") or (0.0, 1.0)
    created = getattr(report, "created", None)
    when = (
        f"evaluated {_e(created)}"
        if created
        else f"rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    limit = report.config.get("limit")
    plugins = env.get("plugins") or {}
    versions = [f"{_e(k)} {_e(v)}" for k, v in env.items() if k not in ("plugins", "platform")]
    flagged = [c for c in report.sanity if not c.passed]
    if flagged:
        verdict = (
            f'<a class="badge flag" href="#sanity">{len(flagged)} sanity check'
            f'{"s" if len(flagged) > 1 else ""} flagged</a>'
        )
    elif report.sanity:
        verdict = f'<a class="badge pass" href="#sanity">{len(report.sanity)} sanity checks passed</a>'
    else:
        verdict = '<a class="badge warn" href="#sanity">sanity checks not run</a>'
    class_counts = " · ".join(f"{_e(n)} {_e(counts.get(n, '?'))}" for n in names)
    return f"""<header>
<p class="brand">Égide · robustness report</p>
<h1>{_e(model.get("name", "model"))}</h1>
<div class="headline">
  <div class="big"><span class="label">clean accuracy</span><span class="value">{_pct(report.clean_accuracy)}</span></div>
  <div class="big"><span class="label">worst-case robust accuracy</span><span class="value">{_worst_summary(report)}</span></div>
  <div class="verdict">{verdict}</div>
</div>
<p class="definition"><strong>Robust accuracy</strong> is the share of all {_e(data.get("images", "?"))} evaluated
images that the model classifies correctly before the attack and still after it; the
<strong>worst case</strong> counts an image as robust only if it survives every L∞ attack at that ε.</p>
<dl class="facts">
  <dt>Model</dt><dd>{_e(model.get("name", "?"))} · input {_e(shape)} in [{_num(clip[0])}, {_num(clip[1])}] ·
    {_e(model.get("num_classes", len(names)))} classes · logits: {_e(model.get("logits", "?"))}</dd>
  <dt>Data</dt><dd>{_e(data.get("source", "?"))} · split {_e(data.get("split") or "none")} ·
    {_e(data.get("images", "?"))} images{f" (first {_e(limit)})" if limit else ""}</dd>
  <dt>Classes</dt><dd>{class_counts or "?"}</dd>
  <dt>Run</dt><dd>{when} · evaluation took {_seconds(report.seconds)}</dd>
  <dt>Environment</dt><dd>{" · ".join(versions)}<br><span class="muted">{_e(env.get("platform", ""))}</span></dd>
  <dt>Plugins</dt><dd>{" · ".join(f"{_e(k)} {_e(v)}" for k, v in plugins.items()) or "?"}</dd>
</dl>
<nav>{" · ".join(f'<a href="#{a}">{t}</a>' for a, t in NAV if _present(report, a))}</nav>
</header>"""


NAV = (
    ("sanity", "Sanity checks"),
    ("robustness", "Robust accuracy vs ε"),
    ("tables", "Tables"),
    ("per-class", "Per class"),
    ("gallery", "Gallery"),
    ("cw", "C&amp;W minimal L2"),
    ("defenses", "Defenses"),
    ("detectors", "Detectors"),
    ("config", "Configuration"),
)


def _present(report, anchor: str) -> bool:
    """Defense and detector sections exist only when the evaluation had some."""
    return {"defenses": bool(report.defenses), "detectors": bool(report.detectors)}.get(anchor, True)


def _worst_summary(report) -> str:
    """The worst case at the largest epsilon: the one number a reader looks for first."""
    measured = [e for e in _config_eps(report) if eps_key(e) in report.worst_case]
    if not measured:
        return "n/a"
    top = measured[-1]
    return f'{_pct(report.worst_case[eps_key(top)])} <span class="at">at ε = {_e(_eps_text(report, top))}</span>'


# ---- 2. sanity checks -----------------------------------------------------------------------
def _sanity_section(report) -> str:
    checks = report.sanity
    flagged = [c for c in checks if not c.passed]
    if not checks:
        banner = (
            '<div class="banner warn"><strong>Sanity checks were not run.</strong> '
            "Nothing here would reveal gradient masking: treat the numbers below as upper "
            "bounds on robustness.</div>"
        )
    elif flagged:
        banner = (
            f'<div class="banner flag" role="alert"><strong>{len(flagged)} of {len(checks)} '
            "sanity checks flagged.</strong> The attacks may be failing (gradient masking, "
            "too few steps): the robust accuracy below may overstate the model's real "
            "robustness until this is explained.</div>"
        )
    else:
        banner = (
            f'<div class="banner pass">All {len(checks)} sanity checks passed: no sign of '
            "gradient masking in these runs.</div>"
        )
    items = "\n".join(
        f'<li class="check {"pass" if c.passed else "flag"}">'
        f'<span class="badge {"pass" if c.passed else "flag"}">{"pass" if c.passed else "FLAG"}</span>'
        f'<span class="check-name">{_e(c.name)}</span>'
        f'<span class="check-message">{_e(c.message)}</span></li>'
        for c in checks
    )
    return f"""<section id="sanity">
<h2>Sanity checks</h2>
{banner}
{f'<ul class="checks">{items}</ul>' if checks else ""}
<p class="note">They look for the signs of gradient masking: an iterative attack weaker than
single-step FGSM, accuracy that does not fall as ε grows, an unbounded attack that does not
break nearly every image.</p>
</section>"""


# ---- 3. robust accuracy vs epsilon ----------------------------------------------------------
def _plot_section(report) -> str:
    runs = _bounded_linf_runs(report)
    head = '<section id="robustness">\n<h2>Robust accuracy vs ε</h2>\n'
    if not runs:
        return head + '<p class="note">No L∞-bounded attack ran, so there is no curve to draw.</p>\n</section>'
    evaluated = [r for r in report.runs if r.purpose == "evaluation"]
    notes = []
    if any(r.eps is None for r in evaluated):
        notes.append("Minimal-perturbation runs (C&amp;W) have no ε: they are in the tables and below.")
    others = sorted({r.attack for r in evaluated if r.eps is not None and r.norm != "inf"})
    if others:
        notes.append(f"Runs with another norm ({_e(', '.join(others))}) have ε in other units: tables only.")
    return (
        head
        + f'<figure class="plot">{_robustness_svg(report, runs)}<figcaption>One line per L∞ attack '
        "(a marker at each ε); the bold black line is the per-sample worst case over all of them, "
        f"the dashed line the clean accuracy. {' '.join(notes)}</figcaption></figure>\n</section>"
    )


def _robustness_svg(report, runs) -> str:
    return _svg_plot(
        lambda fig, ax: _draw_robustness(fig, ax, report, runs),
        (8.6, 4.0), "robustness", "Robust accuracy versus epsilon, one line per attack",
    )


def _draw_robustness(fig, ax, report, runs) -> None:
    from matplotlib.lines import Line2D

    eps_values = sorted({r.eps for r in runs})
    in_255 = _in_255(report)
    scale = 255.0 if in_255 else 1.0
    handles, labels = [], []
    for i, name in enumerate(_attack_order(runs)):
        points = sorted((r.eps, r.robust_accuracy) for r in runs if r.attack == name)
        (line,) = ax.plot(
            [e * scale for e, _ in points],
            [100 * a for _, a in points],
            marker=MARKERS[i % len(MARKERS)],
            color=PALETTE[i % len(PALETTE)],
            linewidth=1.6,
            markersize=6,
        )
        handles.append(line)
        labels.append(_mpl_text(name))
    worst = [(e, report.worst_case.get(eps_key(e))) for e in eps_values]
    worst = [(e, a) for e, a in worst if a is not None]
    if worst:
        (line,) = ax.plot(
            [e * scale for e, _ in worst], [100 * a for _, a in worst],
            color="black", linewidth=3.2, marker="o", markersize=7, zorder=5,
        )
        handles.append(line)
        labels.append("worst case (per sample)")
    ax.axhline(100 * report.clean_accuracy, color="#555555", linestyle="--", linewidth=1.2)
    handles.append(Line2D([], [], color="#555555", linestyle="--", linewidth=1.2))
    labels.append(f"clean ({100 * report.clean_accuracy:.1f}%)")

    ax.set_xticks([e * scale for e in eps_values])
    ax.set_xticklabels([_mpl_text(_eps_text(report, e)) for e in eps_values])
    ax.set_xlim(0, max(eps_values) * scale * 1.06)
    ax.set_xlabel("ε, L∞ budget" + ("" if in_255 else " (input units)"))
    ax.set_ylim(-3, 103)
    ax.set_ylabel("robust accuracy (%)")
    ax.grid(True, color="#e4e4e4", linewidth=0.8)
    ax.set_axisbelow(True)
    # Explicit labels: matplotlib would silently drop a legend label that starts with "_".
    fig.legend(handles, labels, loc="outside right upper", frameon=False)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


# ---- 4. tables --------------------------------------------------------------------------------
def _tables_section(report) -> str:
    evaluated = [r for r in report.runs if r.purpose == "evaluation"]
    sanity = [r for r in report.runs if r.purpose == "sanity"]
    n = int(report.data.get("images") or 0)
    noise = (
        f" With {n} images the 95% interval of an accuracy near 50% is about "
        f"±{196 * math.sqrt(0.25 / n):.1f} points."
        if n
        else ""
    )
    return f"""<section id="tables">
<h2>Robust accuracy per attack and ε</h2>
{_matrix_table(report)}
<p class="note">Clean accuracy {_pct(report.clean_accuracy)}. The worst case is per image: an image
counts as robust only if no L∞ attack at that ε broke it, so it can be lower than every
single attack.{noise}</p>
<h3>Every run</h3>
{_runs_table(report, evaluated, "No attack ran.")}
<h3>Unbounded sanity run <span class="tag">not a robustness number</span></h3>
<p class="note">An attack with a budget as large as the whole input range must break nearly every
correctly classified image; if it does not, the attacks are failing, not the model resisting.</p>
{_runs_table(report, sanity, "No unbounded sanity run (sanity checks were off, or PGD is not installed).")}
</section>"""


def _matrix_table(report) -> str:
    runs = _bounded_linf_runs(report)
    if not runs:
        return '<p class="note">No L∞-bounded attack ran.</p>'
    eps_values = sorted({r.eps for r in runs})
    by = {(r.attack, r.eps): r for r in runs}
    head = "".join(f"<th>ε = {_e(_eps_text(report, e))}</th>" for e in eps_values)
    rows = []
    for name in _attack_order(runs):
        cells = "".join(
            _acc_cell(by[(name, e)].robust_accuracy) if (name, e) in by else '<td class="na">—</td>'
            for e in eps_values
        )
        rows.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    worst = "".join(_acc_cell(report.worst_case.get(eps_key(e))) for e in eps_values)
    rows.append(f'<tr class="worst"><th>worst case (per sample)</th>{worst}</tr>')
    return (
        f'<table class="matrix"><thead><tr><th>attack</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _runs_table(report, runs, empty: str) -> str:
    if not runs:
        return f'<p class="note">{_e(empty)}</p>'
    # Attack by attack (in the order they ran), epsilon ascending, minimal-L2 runs last.
    order = {name: i for i, name in enumerate(_attack_order(runs))}
    runs = sorted(runs, key=lambda r: (order[r.attack], r.eps is None, r.eps or 0.0))
    rows = []
    for i, r in enumerate(runs):
        if r.eps is None:
            budget = "none (minimal L2)"
        elif r.purpose == "sanity":
            budget = f"{_num(r.eps)} (whole range)"
        else:
            budget = _eps_text(report, r.eps) + ("" if r.norm == "inf" else f" (L{r.norm} budget)")
        # An L-inf run whose perturbation exceeds its budget is a bug in the attack: say so.
        over = r.eps is not None and r.norm == "inf" and r.linf_max > r.eps * (1 + LINF_TOLERANCE) + 1e-7
        size = _size_text(report, r.linf_max) if r.purpose == "evaluation" else _num(r.linf_max)
        linf = f'<td class="num{" over" if over else ""}">{_e(size)}{" &gt; ε!" if over else ""}</td>'
        # Name and parameters once per attack: its runs differ only by epsilon.
        group = ""
        if i == 0 or runs[i - 1].attack != r.attack:
            span = 1
            while i + span < len(runs) and runs[i + span].attack == r.attack:
                span += 1
            params = ", ".join(f"{k}={v}" for k, v in r.params.items() if k != "eps")
            group = f'<th rowspan="{span}">{_e(r.attack)}<div class="params">{_e(params)}</div></th>'
        rows.append(
            f"<tr>{group}<td>{_e(budget)}</td>"
            f'<td class="num">{_pct(r.robust_accuracy)}</td><td class="num">{_pct(r.success_rate)}</td>'
            f'<td class="num">{_num(r.l2_mean)}</td>{linf}<td class="num">{_seconds(r.seconds)}</td></tr>'
        )
    return (
        '<table class="runs"><thead><tr><th>attack and parameters</th><th>ε</th><th>robust acc.</th>'
        "<th>success rate</th><th>mean L2</th><th>max L∞</th><th>time</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# ---- 5. per class ---------------------------------------------------------------------------
def _per_class_section(report) -> str:
    head = '<section id="per-class">\n<h2>Robust accuracy per class</h2>\n'
    names = list(report.data.get("class_names", [])) or list(report.worst_case_per_class)
    eps_values = [e for e in _config_eps(report) if eps_key(e) in report.worst_case]
    keys = [eps_key(e) for e in eps_values]
    if not names:
        return head + '<p class="note">No class information.</p>\n</section>'
    counts = report.data.get("class_counts", {})
    table_rows = []
    means = {}
    for name in names:
        per_eps = report.worst_case_per_class.get(name, {})
        values = [per_eps.get(k) for k in keys]
        finite = [v for v in values if _finite(v)]
        if finite:
            means[name] = sum(finite) / len(finite)
        cells = "".join(_acc_cell(v) for v in values)
        table_rows.append(
            f'<tr><th>{_e(name)}</th><td class="num">{_e(counts.get(name, "?"))}</td>'
            f"{_acc_cell(report.clean_per_class.get(name))}{cells}</tr>"
        )
    overall = "".join(_acc_cell(report.worst_case.get(k)) for k in keys)
    table_rows.append(
        f'<tr class="worst"><th>all classes</th><td class="num">{_e(report.data.get("images", "?"))}</td>'
        f"{_acc_cell(report.clean_accuracy)}{overall}</tr>"
    )
    eps_head = "".join(f"<th>ε = {_e(_eps_text(report, e))}</th>" for e in eps_values)
    return (
        head
        + f'<p class="lead">{_fragile_sentence(means, keys)}</p>\n'
        + f'<table class="matrix per-class"><thead><tr><th>class</th><th>images</th><th>clean</th>{eps_head}'
        + f"</tr></thead><tbody>{''.join(table_rows)}</tbody></table>\n"
        + '<p class="note">Worst case over the L∞ attacks, per class; the redder the cell, the more '
        "fragile the class. n/a: no image of that class in the evaluated split.</p>\n</section>"
    )


def _fragile_sentence(means: dict[str, float], keys: list[str]) -> str:
    if not keys:
        return "No L∞ attack ran, so there is no per-class robust accuracy."
    if len(means) < 2:
        return "Too few classes with images to compare."
    ordered = sorted(means.items(), key=lambda kv: kv[1])
    (weak, low), (runner_up, next_low) = ordered[0], ordered[1]
    if math.isclose(low, next_low, abs_tol=1e-9):
        return "No single class is more fragile than the others (equal mean robust accuracy over ε)."
    return (
        f"Most fragile class: <strong>{_e(weak)}</strong>, with a worst-case robust accuracy of "
        f"{_pct(low)} on average over the ε (next: {_e(runner_up)}, {_pct(next_low)})."
    )


# ---- 6. gallery -----------------------------------------------------------------------------
def _gallery_section(report) -> str:
    head = '<section id="gallery">\n<h2>Gallery</h2>\n'
    items = report.gallery
    if not items:
        return head + (
            '<p class="note">No gallery: it was turned off (gallery = 0), or no image was both '
            "correctly classified and attacked with an L∞ budget.</p>\n</section>"
        )
    lo, hi = (report.model.get("clip") or report.config.get("clip") or (0.0, 1.0))[:2]
    attacks = {(g.attack, g.eps) for g in items}
    if len(attacks) == 1:
        attack, eps = attacks.pop()
        intro = (
            f"Correctly classified images under <strong>{_e(attack)}</strong> at "
            f"ε = {_e(_eps_text(report, eps))} (the strongest L∞ run at the largest ε)."
        )
    else:
        intro = "Correctly classified images under the attack named on each card."
    cards = "\n".join(_gallery_card(report, g, float(lo), float(hi)) for g in items)
    return (
        head
        + f'<p class="lead">{intro} A prediction in red differs from the true label. The perturbation '
        "is amplified so that its largest change fills the grey scale: mid-grey is no change, "
        "lighter pixels were brightened, darker ones darkened.</p>\n"
        + f'<div class="gallery">\n{cards}\n</div>\n</section>'
    )


def _gallery_card(report, g, lo: float, hi: float) -> str:
    clean = np.asarray(g.clean, dtype=np.float64)
    adv = np.asarray(g.adversarial, dtype=np.float64)
    span = hi - lo
    delta = (adv - clean) / span
    peak = float(np.abs(delta).max()) if delta.size else 0.0
    # Map [-peak, +peak] onto [0, 1] around mid-grey; the factor is how much it was magnified.
    factor = 0.5 / peak if peak > 0 else 0.0
    flipped = g.adv_pred != g.label
    status = '<span class="badge flag">flipped</span>' if flipped else '<span class="badge pass">held</span>'
    if peak > 0:
        amplified = f"perturbation ×{factor:.3g}<br>max |δ| = {_e(_size_text(report, peak * span))}"
    else:
        amplified = "perturbation<br>none: identical images"
    panels = [
        ((clean - lo) / span, "clean", "clean<br>" + _prediction(g.clean_pred, g.clean_confidence, g.label)),
        (
            (adv - lo) / span,
            "adversarial",
            f"{_e(g.attack)} ε = {_e(_eps_text(report, g.eps))}<br>"
            + _prediction(g.adv_pred, g.adv_confidence, g.label),
        ),
        (0.5 + delta * factor, "amplified perturbation", amplified),
    ]
    figures = "\n".join(
        f'  <figure><img src="{_png_uri(image)}" alt="{what} {_e(g.index)}" width="{IMAGE_WIDTH}">'
        f"<figcaption>{caption}</figcaption></figure>"
        for image, what, caption in panels
    )
    return f"""<article class="card{" flipped" if flipped else ""}">
<header><span>image #{_e(g.index)} · true <strong>{_e(g.label)}</strong></span>{status}</header>
<div class="triptych">
{figures}
</div>
</article>"""


def _prediction(predicted: str, confidence: float, label: str) -> str:
    """A predicted label and its confidence, in red when it is not the true label."""
    css = "ok" if predicted == label else "wrong"
    return f'<span class="{css}">{_e(predicted)} {_pct(confidence)}</span>'


def _png_uri(image: np.ndarray) -> str:
    """A PNG data URI of an image with values in [0, 1] (HxW, HxWx1 or HxWx3)."""
    from PIL import Image

    a = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0), 0.0, 1.0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[-1] != 3:
        a = a.mean(axis=-1)  # neither gray nor RGB: show the channel mean
    pixels = np.round(a * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- 7. C&W minimal L2 ------------------------------------------------------------------------
def _cw_section(report) -> str:
    from matplotlib.ticker import MaxNLocator

    head = '<section id="cw">\n<h2>C&amp;W minimal L2 perturbation</h2>\n'
    cw_runs = [r for r in report.runs if r.attack == "cw" and r.purpose == "evaluation"]
    values = np.asarray([v for v in report.cw_l2 if _finite(v)], dtype=np.float64)
    if not values.size:
        note = (
            "C&amp;W ran but found no adversarial example: for an unbounded attack this is a "
            "warning sign (see the sanity checks)."
            if cw_runs
            else "C&amp;W was not part of this evaluation, so there is no minimal-L2 distribution."
        )
        return head + f'<p class="note">{note}</p>\n</section>'
    correct = round(report.clean_accuracy * int(report.data.get("images") or 0))
    median, mean = float(np.median(values)), float(values.mean())

    def draw(fig, ax):
        ax.hist(values, bins=min(30, max(5, int(math.sqrt(values.size)) * 2)), color=PALETTE[0], alpha=0.85)
        ax.axvline(median, color="black", linewidth=2, label=f"median {median:.3g}")
        ax.axvline(mean, color=PALETTE[4], linewidth=1.6, linestyle="--", label=f"mean {mean:.3g}")
        ax.set_xlabel("L2 norm of the smallest adversarial perturbation found (input units)")
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images, not fractions
        fig.legend(loc="outside right upper", frameon=False)  # never over the bars

    svg = _svg_plot(draw, (8.2, 3.0), "cw", "Histogram of the C&W minimal L2 perturbations")
    return (
        head
        + f'<figure class="plot">{svg}<figcaption>{values.size} adversarial examples'
        + (f" out of {correct} correctly classified images" if correct else "")
        + f"; <strong>median {median:.3g}</strong>, <strong>mean {mean:.3g}</strong>, range "
        + f"{values.min():.3g}–{values.max():.3g}. {_l2_scale(report)}</figcaption></figure>\n</section>"
    )


def _l2_scale(report) -> str:
    """What an L-inf budget means in L2, to read the histogram against the ε of the plot."""
    eps = _config_eps(report)
    shape = report.model.get("input_shape") or []
    if not eps or not shape:
        return ""
    d = int(np.prod(shape))
    top = max(eps)
    return (
        f"For scale: a perturbation within the L∞ ball ε = {_e(_eps_text(report, top))} can reach "
        f"L2 = ε·√d = {top * math.sqrt(d):.3g} on these {d}-value images."
    )


# ---- 8. footer ------------------------------------------------------------------------------
def _footer(report) -> str:
    config = json.dumps(report.config, indent=2, sort_keys=False, default=str)
    return f"""<footer id="config">
<h2>Configuration</h2>
<p class="note">Save this JSON as a file and run <code>egide evaluate --config FILE</code> to replay
the evaluation (attacks are seeded). <code>report.json</code>, written beside this page, holds every
number: each run, each class, the sanity checks and the C&amp;W distances.</p>
<pre>{_e(config)}</pre>
<p class="muted">Made by Égide {_e(report.environment.get("egide", ""))}.</p>
</footer>"""


# ---- helpers --------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and math.isfinite(value)


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if _finite(value) else "n/a"


def _num(value) -> str:
    return f"{value:.4g}" if _finite(value) else "n/a"


def _seconds(value) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


def _acc_cell(value) -> str:
    """A table cell whose background reddens as accuracy falls: fragility at a glance."""
    if not _finite(value):
        return '<td class="num na" title="no image of this class in the split">n/a</td>'
    t = 1.0 - min(max(float(value), 0.0), 1.0)
    r, g, b = (round(255 + (c - 255) * t) for c in (232, 96, 76))
    return f'<td class="num" style="background:rgb({r},{g},{b})">{_pct(value)}</td>'


def _config_eps(report) -> list[float]:
    """The evaluation's epsilons, ascending (from the config, and from the runs if it lacks them)."""
    listed = report.config.get("eps") or []
    measured = [r.eps for r in _bounded_linf_runs(report)]
    return sorted({float(e) for e in [*listed, *measured]})


def _in_255(report) -> bool:
    """Whether every epsilon is k/255: then they are all written that way, axis included."""
    eps = _config_eps(report)
    return bool(eps) and all(eps_key(e).endswith("/255") for e in eps)


def _eps_text(report, eps: float) -> str:
    return eps_key(eps) if _in_255(report) else f"{eps:.4g}"


def _size_text(report, value: float) -> str:
    """A perturbation size, in the unit the epsilons are written in."""
    if not _finite(value):
        return "n/a"
    return f"{value * 255:.3g}/255" if _in_255(report) else f"{value:.4g}"


def _bounded_linf_runs(report):
    return [r for r in report.runs if r.purpose == "evaluation" and r.eps is not None and r.norm == "inf"]


def _attack_order(runs) -> list[str]:
    return list(dict.fromkeys(r.attack for r in runs))


def _mpl_text(text: str) -> str:
    # A "$" would start matplotlib's math mode (and can fail to parse): show it as a dollar.
    return str(text).replace("$", r"\$")


def _svg_plot(draw, size: tuple[float, float], salt: str, label: str) -> str:
    """Draw with `draw(fig, ax)` and return the figure as an inline <svg> element.

    A bare matplotlib Figure, without pyplot: no global state, no GUI backend. Text stays text
    (svg.fonttype none) so it is searchable and crisp; the salt makes each figure's ids distinct
    within the page and the output reproducible.
    """
    import re

    import matplotlib
    from matplotlib.figure import Figure

    style = {"font.size": 11, "svg.fonttype": "none", "svg.hashsalt": f"egide-{salt}"}
    with matplotlib.rc_context(style):  # fonts are read when each text is made: draw inside
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        ax.spines[["top", "right"]].set_visible(False)
        draw(fig, ax)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    # Drop the XML prolog, DOCTYPE and RDF metadata (they name external URLs) and the
    # namespace declarations, which the HTML parser supplies itself for inline SVG.
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    # matplotlib numbers its ids per figure (figure_1, axes_1...): prefix them, so two plots
    # never share an id within the page.
    svg = re.sub(r'\b(id="|href="#|url\(#)', rf"\g<1>{salt}-", svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{_e(label)}"', 1)


CSS = """
:root { --ink:#1d2430; --muted:#5d6675; --line:#d9dde3; --bg:#f6f7f9; --flag:#b42318;
  --flag-bg:#fdecea; --pass:#067647; --pass-bg:#e8f5ee; --warn:#8a5a00; --warn-bg:#fff4dc; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width:1120px; margin:0 auto; padding:24px 28px 48px; }
header, section, footer { background:#fff; border:1px solid var(--line); border-radius:8px;
  padding:20px 24px; margin-bottom:18px; }
h1 { margin:0 0 12px; font-size:26px; }
h2 { margin:0 0 12px; font-size:19px; }
h3 { margin:20px 0 8px; font-size:15px; }
.brand { margin:0; color:var(--muted); font-size:13px; letter-spacing:.06em; text-transform:uppercase; }
.headline { display:flex; flex-wrap:wrap; gap:28px; align-items:center; margin-bottom:10px; }
.big .label { display:block; color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.big .value { font-size:28px; font-weight:650; font-variant-numeric:tabular-nums; }
.big .at { font-size:15px; font-weight:400; color:var(--muted); }
.definition { background:var(--bg); border-left:3px solid var(--ink); padding:8px 12px; margin:10px 0 14px; }
dl.facts { display:grid; grid-template-columns:110px 1fr; gap:4px 14px; margin:0 0 12px; font-size:14px; }
dl.facts dt { color:var(--muted); }
dl.facts dd { margin:0; overflow-wrap:anywhere; }
nav { font-size:13px; color:var(--muted); border-top:1px solid var(--line); padding-top:10px; }
a { color:#0b5cab; }
.muted, .note { color:var(--muted); }
.note { font-size:13.5px; }
.lead { margin-top:0; }
.badge { display:inline-block; min-width:46px; text-align:center; padding:2px 9px; border-radius:999px;
  font-size:12px; font-weight:700; letter-spacing:.03em; text-transform:uppercase; text-decoration:none; }
.badge.pass { background:var(--pass-bg); color:var(--pass); border:1px solid #9ed3b5; }
.badge.flag { background:var(--flag); color:#fff; border:1px solid var(--flag); }
.badge.warn { background:var(--warn-bg); color:var(--warn); border:1px solid #e8c26e; }
.verdict .badge { font-size:14px; padding:6px 14px; }
.banner { padding:12px 16px; border-radius:6px; margin-bottom:12px; }
.banner.flag { background:var(--flag-bg); border:2px solid var(--flag); color:#7a1a10; }
.banner.pass { background:var(--pass-bg); border:1px solid #9ed3b5; color:#064e32; }
.banner.warn { background:var(--warn-bg); border:2px solid #e8c26e; color:#5c3c00; }
ul.checks { list-style:none; padding:0; margin:0; }
li.check { display:grid; grid-template-columns:70px 270px 1fr; gap:12px; align-items:baseline;
  padding:9px 12px; border-bottom:1px solid var(--line); }
li.check.flag { background:var(--flag-bg); border-left:5px solid var(--flag); }
li.check.pass { border-left:5px solid transparent; }
.check-name { font-family:ui-monospace, "DejaVu Sans Mono", monospace; font-size:13px; overflow-wrap:anywhere; }
li.check.flag .check-message { color:#7a1a10; font-weight:550; }
figure { margin:0; }
figure.plot svg { display:block; width:100%; max-width:860px; height:auto; }
figure.plot.roc svg { max-width:560px; }
figure.plot figcaption { font-size:13.5px; color:var(--muted); margin-top:6px; max-width:860px; }
table { border-collapse:collapse; font-size:14px; margin:4px 0 8px; }
th, td { padding:5px 10px; border:1px solid var(--line); text-align:left; }
thead th { background:var(--bg); font-weight:600; white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.na { color:var(--muted); background:repeating-linear-gradient(45deg,#fafafa,#fafafa 4px,#eee 4px,#eee 8px); }
table.matrix td.num { min-width:92px; }
tr.worst th, tr.worst td { font-weight:700; border-top:2px solid var(--ink); }
td.over { color:var(--flag); font-weight:700; }
table.runs th[rowspan] { vertical-align:top; max-width:300px; }
div.params { font-family:ui-monospace, "DejaVu Sans Mono", monospace; font-size:11.5px; font-weight:400;
  color:var(--muted); overflow-wrap:anywhere; margin-top:2px; }
.tag { font-size:11px; font-weight:600; color:var(--warn); background:var(--warn-bg); border-radius:4px;
  padding:1px 6px; vertical-align:middle; text-transform:uppercase; letter-spacing:.03em; }
.gallery { display:grid; grid-template-columns:repeat(auto-fill, minmax(min(450px, 100%), 1fr)); gap:14px; }
article.card { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:#fff; }
article.card.flipped { border-color:#e8a39b; }
article.card header { all:unset; display:flex; justify-content:space-between; align-items:center;
  font-size:14px; margin-bottom:8px; }
.triptych { display:flex; gap:12px; }
.triptych figure { width:130px; }
.triptych img { display:block; box-sizing:content-box; width:128px; height:auto; image-rendering:pixelated;
  border:1px solid #c8ccd2; background:#000; }
.triptych figcaption { font-size:12.5px; line-height:1.35; margin-top:4px; overflow-wrap:anywhere; }
.ok { color:var(--ink); }
.wrong { color:var(--flag); font-weight:700; }
pre { background:#f2f3f5; border:1px solid var(--line); border-radius:6px; padding:12px; overflow:auto;
  font-size:12.5px; }
code { font-family:ui-monospace, "DejaVu Sans Mono", monospace; font-size:13px; }
table { display:block; overflow-x:auto; max-width:100%; }
@media (max-width: 720px) {
  main { padding:12px; }
  li.check { grid-template-columns:1fr; gap:4px; }
  dl.facts { grid-template-columns:1fr; }
  .triptych { flex-wrap:wrap; }
}
@media print { body { background:#fff; } header, section, footer { break-inside:avoid; } }
"""
