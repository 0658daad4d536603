"""The report's figures: matplotlib drawings returned as inline SVG (or PNG data URIs for
images), so the page stays one self-contained file.

A bare matplotlib Figure, without pyplot: no global state, no GUI backend. Text stays text
(svg.fonttype none), so it is searchable and crisp; each figure's ids get its own prefix, so two
plots never share an id within the page, and the output is reproducible.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re

import numpy as np

from .format import Units, attack_order, bounded_linf_runs, finite
from .model import eps_key

# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#8C6D1F", "#7F7F7F")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


def svg_plot(draw, size: tuple[float, float], salt: str, label: str) -> str:
    """Draw with `draw(fig, ax)` and return the figure as an inline <svg> element."""
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
    svg = re.sub(r'\b(id="|href="#|url\(#)', rf"\g<1>{salt}-", svg)
    label = html.escape(label, quote=True)
    return svg.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def mpl_text(text: str) -> str:
    # A "$" would start matplotlib's math mode (and can fail to parse): show it as a dollar.
    return str(text).replace("$", r"\$")


def png_uri(image: np.ndarray) -> str:
    """A PNG data URI of an image with values in [0, 1] (HxW, HxWx1 or HxWx3), or of a volume
    (DxHxWxC) as its three mid-slices."""
    from PIL import Image

    from egide.lab.report.volume_views import as_picture

    a = np.clip(np.nan_to_num(as_picture(np.asarray(image, dtype=np.float64)), nan=0.0), 0.0, 1.0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[-1] != 3:
        a = a.mean(axis=-1)  # neither gray nor RGB: show the channel mean
    pixels = np.round(a * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L" if pixels.ndim == 2 else "RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---- robust accuracy versus epsilon -----------------------------------------------------------
def draw_robustness(fig, ax, report, runs) -> None:
    """One line per L-inf attack, the per-sample worst case in bold, the clean accuracy dashed.
    Shared by the report (SVG) and the server's page (PNG)."""
    from matplotlib.lines import Line2D

    units = Units(report)
    eps_values = sorted({r.eps for r in runs})
    scale = 255.0 if units.in_255 else 1.0
    handles, labels = [], []
    for i, name in enumerate(attack_order(runs)):
        points = sorted((r.eps, r.robust_accuracy) for r in runs if r.attack == name)
        (line,) = ax.plot(
            [e * scale for e, _ in points], [100 * a for _, a in points],
            marker=MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)],
            linewidth=1.6, markersize=6,
        )
        handles.append(line)
        labels.append(mpl_text(name))
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
    ax.set_xticklabels([mpl_text(units.eps(e)) for e in eps_values])
    ax.set_xlim(0, max(eps_values) * scale * 1.06)
    ax.set_xlabel(f"ε, {units.norm_label} budget" + ("" if units.in_255 else " (input units)"))
    ax.set_ylim(-3, 103)
    ax.set_ylabel("robust accuracy (%)")
    ax.grid(True, color="#e4e4e4", linewidth=0.8)
    ax.set_axisbelow(True)
    # Explicit labels: matplotlib would silently drop a legend label that starts with "_".
    fig.legend(handles, labels, loc="outside right upper", frameon=False)


def robustness_svg(report, runs) -> str:
    return svg_plot(lambda fig, ax: draw_robustness(fig, ax, report, runs), (8.6, 4.0),
                    "robustness", "Robust accuracy versus epsilon, one line per attack")


# ---- minimal perturbations --------------------------------------------------------------------
def minimal_svg(found, values: np.ndarray, median: float, mean: float) -> str:
    """Histogram of the perturbation sizes a minimal-perturbation attack needed."""
    from matplotlib.ticker import MaxNLocator

    norm = "L2" if found.norm == "2" else "L∞"

    def draw(fig, ax):
        ax.hist(values, bins=min(30, max(5, int(math.sqrt(values.size)) * 2)), color=PALETTE[0], alpha=0.85)
        ax.axvline(median, color="black", linewidth=2, label=f"median {median:.3g}")
        ax.axvline(mean, color=PALETTE[4], linewidth=1.6, linestyle="--", label=f"mean {mean:.3g}")
        ax.set_xlabel(f"{norm} norm of the smallest adversarial perturbation found (input units)")
        ax.set_ylabel("images")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of images, not fractions
        fig.legend(loc="outside right upper", frameon=False)  # never over the bars

    return svg_plot(draw, (8.2, 3.0), f"minimal-{found.attack}",
                    f"Histogram of the {found.title} minimal {norm} perturbations")


# ---- defenses ---------------------------------------------------------------------------------
def defenses_svg(report, eps_values) -> str:
    units = Units(report)
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
                    linewidth=1.8, label=mpl_text(f"{d.name} (adaptive)"))
            ax.plot(xs, [100 * p["non_adaptive"] for p in pairs], color=color, marker=marker,
                    linewidth=1.2, linestyle="--", alpha=0.8,
                    label=mpl_text(f"{d.name} (non-adaptive)"))
        ax.set_xticks(xs)
        ax.set_xticklabels([mpl_text(units.eps(e)) for e in eps_values])
        ax.set_xlim(0, max(xs) * 1.06)
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"ε, {units.norm_label} budget")
        ax.set_ylabel("worst-case robust accuracy (%)")
        ax.grid(True, color="#e4e4e4", linewidth=0.8)
        fig.legend(loc="outside right upper", frameon=False)

    return svg_plot(draw, (8.6, 4.0), "defenses",
                    "Worst-case robust accuracy versus epsilon for each defense, adaptive and not")


# ---- detectors --------------------------------------------------------------------------------
def roc_runs(d) -> list:
    """A detector's runs at its detection budget (and the unbounded ones): one ROC curve each."""
    return [r for r in d.runs if r.eps is None or math.isclose(r.eps, d.detection_eps)]


def draw_roc(fig, ax, report, d) -> None:
    """One detector's ROC curves at its detection budget, one per attack."""
    units = Units(report)
    for i, r in enumerate(roc_runs(d)):
        fpr, tpr = zip(*r.roc) if r.roc else ((0, 1), (0, 1))
        budget = "" if r.eps is None else f" ε={units.eps(r.eps)}"
        ax.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], linewidth=1.8,
                label=mpl_text(f"{r.attack}{budget} (AUC {r.auc:.3f})"))
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="chance")
    ax.axvline(0.05, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (clean images flagged)")
    ax.set_ylabel("true-positive rate (adversarials flagged)")
    ax.grid(True, color="#e4e4e4", linewidth=0.8)
    ax.legend(loc="lower right", frameon=False, fontsize=9)


def roc_svg(report, d) -> str:
    return svg_plot(lambda fig, ax: draw_roc(fig, ax, report, d), (5.6, 4.4), f"roc-{d.name}",
                    f"ROC curves of {d.name}, one per attack")


# ---- PNG copies for the server's page ------------------------------------------------------------
def robustness_png(report, path) -> bool:
    """The accuracy-versus-epsilon plot as a PNG sized for a narrow column (legend underneath);
    False when there is no curve to draw (no L-inf attack with a budget ran)."""
    import matplotlib
    from matplotlib.figure import Figure

    runs = bounded_linf_runs(report)
    if not runs:
        return False
    with matplotlib.rc_context({"font.size": 10}):
        fig = Figure(figsize=(5.2, 4.0), layout="constrained")
        ax = fig.add_subplot()
        ax.spines[["top", "right"]].set_visible(False)
        draw_robustness(fig, ax, report, runs)
        for legend in list(fig.legends):
            handles, labels = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
            legend.remove()
            fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
        fig.savefig(path, format="png", dpi=120, metadata={"Software": None})
    return True


def roc_png(report, d, path) -> bool:
    """One detector's ROC curves as a PNG; False when no attack fooled the model."""
    from matplotlib.figure import Figure

    if not any(r.roc for r in roc_runs(d)):
        return False
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    draw_roc(fig, ax, report, d)
    ax.set_title(f"{d.name}: ROC")
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    return True


def finite_values(values) -> np.ndarray:
    return np.asarray([v for v in values if finite(v)], dtype=np.float64)
