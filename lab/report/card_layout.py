"""The card as a sequence of plain blocks (headings, paragraphs, lists, tables, code), the one
layout both the HTML page and the PDF render, so the two always say the same thing in the same
order: first the summary (one page), then the evidence, section by section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .card import Interval, RobustnessCard


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str
    warning: bool = False


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None
    widths: list[float] = field(default_factory=list)  # relative column widths (PDF); empty: even


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class PageBreak:
    pass


Block = Heading | Paragraph | Bullets | Table | Code | PageBreak


def layout(card: RobustnessCard) -> list[Block]:
    return [*_first_page(card), PageBreak(), *_identity(card), *_threat(card), *_accuracy(card), *_flips(card),
            *_bounds(card), *_defenses(card), *_checks(card), Heading("8. Limitations"), Bullets(card.limitations),
            *_replay(card)]


def _ci(value: Interval | None) -> str:
    if value is None:
        return "—"
    if not value.n:
        return "no images"
    return f"{value.value:.1%} ({value.low:.1%}–{value.high:.1%})"


def _first_page(card: RobustnessCard) -> list[Block]:
    blocks: list[Block] = [
        Heading(card.title, 1),
        Paragraph(f"Made {card.created} by egide {card.egide}. Every accuracy below is k of n images with its "
                  "95% exact (Clopper–Pearson) interval."),
        Heading("Summary"),
        Bullets(card.summary),
    ]
    flips = {t.key: t for t in card.flips.attacked}
    cert = {r.key: r for r in card.certification.radii} if card.certification else {}
    header = ["Budget", "Robust accuracy, upper bound (95% CI)"]
    if card.flips.negative_class:
        header += ["Missed findings", "False alarms"]
    if cert:
        header.append("Certified, lower bound (smoothed model)")
    clean = card.flips.clean
    rows = [["clean", _ci(card.accuracy.clean)]
            + ([f"{clean.missed_findings} of {clean.positives}", f"{clean.false_alarms} of {clean.negatives}"]
               if card.flips.negative_class else []) + (["—"] if cert else [])]
    for b in card.accuracy.budgets:
        row = [b.key, _ci(b.robust)]
        if card.flips.negative_class:
            t = flips.get(b.key)
            row += [f"{t.missed_findings} of {t.positives}", f"{t.false_alarms} of {t.negatives}"] if t else ["—", "—"]
        if cert:
            row.append(_ci(cert[b.key].certified) if b.key in cert else "—")
        rows.append(row)
    blocks.append(Table(header, rows, caption=f"{card.threat_model.norm_name} budgets. Robust accuracy: "
                        f"{card.accuracy.headline}. Missed findings and false alarms are counts of images."))
    i = card.identity
    blocks.append(Table(["What was tested", "SHA-256"], [
        [f"model file {i.model_file or '(given in memory)'}", i.model_sha256 or "none: no file"],
        [f"{i.images} images, in evaluation order", i.images_sha256 or "not recorded"],
        [f"their {i.images} labels", i.labels_sha256 or "not recorded"],
    ], widths=[1, 1.4]))
    return blocks


def _identity(card: RobustnessCard) -> list[Block]:
    i = card.identity
    facts = [
        ["Model", i.model_name], ["Model file", i.model_file or "given in memory (no file)"],
        ["Model SHA-256", i.model_sha256 or "none"],
        ["Data", f"{i.data_source}" + (f", split {i.split}" if i.split else "")],
        ["Images", f"{i.images}, each {'×'.join(map(str, i.image_shape))}, in [0, 1]"],
        ["Images SHA-256", i.images_sha256 or "not recorded"], ["Labels SHA-256", i.labels_sha256 or "not recorded"],
        ["Selection", i.selection or "every image of the split"],
        ["Input range", f"[{i.input_range[0]:g}, {i.input_range[1]:g}] ({i.input_range_source})"],
        ["Logits", i.logits], *([["Conversion", i.conversion]] if i.conversion else []), ["Seed", str(i.seed)],
        ["Versions", ", ".join(f"{k} {v}" for k, v in i.versions.items() if k != "platform")],
        ["Platform", i.versions.get("platform", "unknown")],
        ["Plugins", ", ".join(f"{k} {v}" for k, v in i.plugins.items()) or "none"],
    ]
    classes = [[str(k), name, str(i.class_counts.get(name, 0))] for k, name in i.classes.items()]
    return [Heading("1. What was tested"), Table(["", ""], facts, widths=[1, 3]),
            Paragraph("The images' hash covers the float32 values in [0, 1] of each image as evaluated (after "
                      "any resizing to the model's input), in evaluation order; the labels' hash their int64 "
                      "values in the same order (egide.lab.report.identity)."),
            Table(["Output", "Class", "Images"], classes, caption="The class mapping: model output index → class.")]


def _threat(card: RobustnessCard) -> list[Block]:
    t = card.threat_model
    return [Heading("2. Threat model"),
            Table(["Budget", f"What it lets the attacker do ({t.norm_name})"],
                  [[b.key, b.words] for b in t.budgets], widths=[1, 5]),
            Bullets(t.attacker), Paragraph(f"Attacks: {', '.join(t.attacks) or 'none'}.")]


def _accuracy(card: RobustnessCard) -> list[Block]:
    a = card.accuracy
    attacks = list(dict.fromkeys(name for b in a.budgets for name in b.per_attack))
    rows = [[b.key, _ci(b.robust)] + [_ci(b.per_attack.get(name)) for name in attacks] for b in a.budgets]
    classes = list(a.clean_per_class)
    per_class = [[name, str(a.clean_per_class[name].n), _ci(a.clean_per_class[name])]
                 + [_ci(b.per_class.get(name)) for b in a.budgets] for name in classes]
    small = [name for name in classes if a.clean_per_class[name].small_sample]
    return [Heading("3. Accuracy, with 95% exact intervals"),
            Paragraph(f"Clean accuracy: {a.clean.text}."),
            Table(["Budget", "Worst case"] + attacks, rows,
                  caption=f"Robust accuracy per budget. Worst case: {a.headline}; each attack alone beside it."),
            Table(["Class", "Images", "Clean"] + [b.key for b in a.budgets], per_class,
                  caption="Per class: clean, and the worst case at each budget."
                  + (f" Too few images to lean on: {', '.join(small)}." if small else ""))]


def _flips(card: RobustnessCard) -> list[Block]:
    f = card.flips
    if f.negative_class:
        roles = (f"'{f.negative_class}' is the no-finding class ({f.negative_source}): a finding called "
                 f"'{f.negative_class}' is a missed finding, '{f.negative_class}' called a finding a false alarm, "
                 "one finding called another a wrong finding.")
    else:
        roles = ("No class was declared as 'no finding' (--negative-class): the matrices are shown without "
                 "clinical roles.")
    blocks: list[Block] = [Heading("4. Where attacked images go"),
                           Paragraph("Rows: the true class; columns: the class the model gave, without attack and "
                                     "under the worst-case attack at each budget. " + roles)]
    for table in [f.clean, *f.attacked]:
        rows = [[name] + [str(v) for v in counts] for name, counts in zip(table.classes, table.counts)]
        title = "without attack" if table.key is None else f"under attack at {table.key}"
        counts = ""
        if f.negative_class:
            counts = (f": {table.missed_findings} missed findings of {table.positives}, {table.false_alarms} false "
                      f"alarms of {table.negatives}, {table.wrong_findings} wrong findings")
        blocks.append(Table(["true \\ given"] + table.classes, rows,
                            caption=f"{table.images} images {title}{counts}."))
    return blocks


def _bounds(card: RobustnessCard) -> list[Block]:
    c = card.certification
    blocks: list[Block] = [Heading("5. Bounds from both sides")]
    if c is None:
        return blocks + [Paragraph("Not computed: every number here is an attack's upper bound. `egide card "
                                   "--certify` adds a randomized-smoothing lower bound.")]
    rows = [[r.key, f"{r.radius:.4g}", _ci(r.attack_bound), _ci(r.certified)] for r in c.radii]
    return blocks + [
        Paragraph(f"Certified by {c.defense} (Cohen et al. 2019): n0 = {c.n0}, n = {c.n}, alpha = {c.alpha:g}; "
                  f"each certificate is wrong with probability at most alpha. Radii: {c.radius_rule}. "
                  f"Abstained (no certificate at any radius): {c.abstained.text}. {c.seconds:.1f} s."),
        Table(["Budget", "L2 radius", "Upper bound: adaptive attacks on the smoothed model",
               "Lower bound: certified"], rows,
              caption="The true robust accuracy of the smoothed model lies between the two bounds; an upper "
                      "bound is '—' when the evaluation did not attack the smoothed model with this sigma.")]


def _defenses(card: RobustnessCard) -> list[Block]:
    blocks: list[Block] = [Heading("6. Defenses and guards, attacked adaptively")]
    if not card.defenses and not card.guards:
        return blocks + [Paragraph("None was evaluated.")]
    keys = [b.key for b in card.threat_model.budgets]
    if card.defenses:
        rows = [[d.name, d.view, _ci(d.clean)] + [_ci(d.adaptive.get(k)) for k in keys] for d in card.defenses]
        blocks.append(Table(["Defense", "How the attacker sees it", "Clean"] + keys, rows,
                            caption="Robust accuracy of each defended model against an attacker who knows the defense."))
        blocks += [Paragraph(d.masking, warning=True) for d in card.defenses if d.masking]
    if card.guards:
        rows = [[g.name, _ci(g.clean_flagged)] + [_ci(g.adaptive.get(k)) for k in keys] for g in card.guards]
        blocks.append(Table(["Guard", "Clean scans flagged"] + keys, rows,
                            caption="Share of attacked scans classified right or flagged, against an attacker "
                                    "who knows the detector."))
        blocks += [Paragraph(f"{g.name}: {g.threshold_fails}", warning=True) for g in card.guards if g.threshold_fails]
    return blocks


def _checks(card: RobustnessCard) -> list[Block]:
    if not card.checks:
        return [Heading("7. Sanity checks"), Paragraph("None ran (turned off): gradient masking was not looked for.",
                                                      warning=True)]
    rows = [[c.state.upper() if c.state == "failed" else c.state, c.name, c.message] for c in card.checks]
    return [Heading("7. Sanity checks"),
            Table(["State", "Check", "What was seen"], rows, widths=[1, 1.6, 4],
                  caption="Failed first. A check that could not run is 'not applicable', never counted as passed.")]


def _replay(card: RobustnessCard) -> list[Block]:
    return [Heading("9. Replay"),
            Paragraph("This configuration, saved as a file and given to `egide evaluate --config FILE`, runs the "
                      "same evaluation again and gives the same numbers."),
            Code(json.dumps(card.identity.replay, indent=2, sort_keys=True))]
