"""A robustness card from a finished evaluation: `build_card(report_json_dict) -> RobustnessCard`.

It reads report.json's content only (so the CLI builds a card from a report folder, and the
server from a stored job), never reruns an attack; a certification, when one was made
(`lab/evaluation/certification.py`), comes in beside it. Every accuracy becomes k of n with its
exact interval; nothing is claimed that did not run.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np

from egide.core.errors import InputError
from egide.lab.data.sampling import Subset

from .card import (
    Accuracy,
    Budget,
    BudgetAccuracy,
    Certification,
    Check,
    DefenseEvidence,
    FlipTable,
    Flips,
    GuardEvidence,
    Identity,
    Interval,
    RobustnessCard,
    ThreatModel,
)
from .flips import flip_matrix
from .format import norm_name
from .intervals import SMALL_SAMPLE, clopper_pearson
from .model import eps_key

CHECK_ORDER = {"failed": 0, "not applicable": 1, "passed": 2}


def build_card(report: dict, *, negative_class: str | None = None,
               certification: Certification | None = None, created: str | None = None) -> RobustnessCard:
    """The card of one evaluation (report.json's content). `negative_class` overrides the one the
    evaluation recorded; `created` (ISO date-time) defaults to now."""
    if not report.get("per_image"):
        raise InputError("this report was made before robustness cards existed (it has no per-image "
                         "results): run the evaluation again with this version of egide")
    facts = _Facts(report)
    identity = _identity(report)
    threat = _threat_model(report, facts)
    accuracy = _accuracy(report, facts)
    flips = _flips(report, facts, negative_class)
    defenses = _defenses(report, facts)
    guards = _guards(report, facts)
    checks = sorted((Check(name=c["name"], state=c["state"], message=c["message"])
                     for c in report.get("sanity_checks", [])), key=lambda c: CHECK_ORDER.get(c.state, 3))
    card = dict(identity=identity, threat_model=threat, accuracy=accuracy, flips=flips,
                certification=certification, defenses=defenses, guards=guards, checks=checks)
    return RobustnessCard(
        title=f"Robustness card: {identity.model_name}",
        created=created or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        egide=report["environment"]["egide"],
        summary=_summary(facts, **card),
        limitations=_limitations(report, facts, **card),
        **card,
    )


class _Facts:
    """What several sections need: sizes, names, budgets in words."""

    def __init__(self, report: dict):
        self.config, self.data, self.model = report["config"], report["data"], report["model"]
        self.norm = str(self.config.get("norm", "inf"))
        self.n = int(self.data["images"])
        self.names = list(self.data["class_names"])
        self.counts = {k: int(v) for k, v in self.data["class_counts"].items()}
        self.shape = list(self.model["input_shape"])
        self.values = int(np.prod(self.shape))
        self.input_range = [float(v) for v in self.model["input_range"]]
        self.eps = [float(e) for e in self.config["eps"]]
        self.keys = [eps_key(e) for e in self.eps]

    def of(self, accuracy: float | None, n: int | None = None) -> Interval:
        """An accuracy over n images (all of them by default) as k of n with its interval."""
        n = self.n if n is None else n
        k = 0 if accuracy is None or not math.isfinite(accuracy) else round(accuracy * n)
        return Interval.of(clopper_pearson(k, n))

    def words(self, eps: float) -> str:
        return budget_words(eps, self.norm, self.shape, self.input_range)


def budget_words(eps: float, norm: str, shape: list[int], input_range: list[float]) -> str:
    """What a budget lets an attacker do to a scan, in pixel terms (images live in [0, 1])."""
    values = int(np.prod(shape))
    size = "×".join(map(str, shape))
    low, high = input_range
    if norm == "inf":
        units = "" if (low, high) == (0.0, 1.0) else f"; {eps * (high - low):.4g} in the model's units [{low:g}, {high:g}]"
        return f"each pixel changed by at most {eps * 255:.3g} grey levels of 255{units}"
    if norm == "2":
        spread = eps / math.sqrt(values) * 255
        one = min(eps, 1.0) * 255
        return (f"an L2 change of {eps:.4g} over the {values:,} values of a {size} image: spread evenly, "
                f"{spread:.3g} grey levels of 255 per pixel; on one pixel, up to {one:.0f}")
    spread = eps / values * 255
    return (f"a total change of {eps:.4g} summed over the {values:,} values of a {size} image "
            f"({eps * 255:,.0f} grey levels of 255 in all): e.g. {min(eps, values):.4g} pixels turned from "
            f"black to white, or {spread:.3g} levels on every pixel")


def _identity(report: dict) -> Identity:
    config, data, model, env = report["config"], report["data"], report["model"], report["environment"]
    subset = Subset.from_dict(data["subset"]).sentence() if data.get("subset") else None
    return Identity(
        model_name=model["name"], model_file=model.get("file"), model_sha256=model.get("sha256"),
        data_source=data["source"], split=data.get("split"), images=data["images"],
        image_shape=model["input_shape"], images_sha256=data.get("images_sha256"),
        labels_sha256=data.get("labels_sha256"), selection=subset,
        classes=dict(enumerate(data["class_names"])), class_counts=data["class_counts"],
        input_range=model["input_range"], input_range_source=model.get("input_range_source", "unknown"),
        logits=model.get("logits", "model output"), conversion=_conversion_text(model.get("conversion")),
        seed=config["seed"],
        versions={k: str(v) for k, v in env.items() if k != "plugins"},
        plugins=env.get("plugins", {}), replay=config)


def _conversion_text(conversion: dict | None) -> str | None:
    if not conversion:
        return None
    on_images = conversion.get("on_evaluated_images") or {}
    checked = f"{conversion['probe_images']} probe images" + (
        f" and {on_images['images']} of the evaluated images" if on_images else "")
    largest = max(conversion["max_abs_difference"], on_images.get("max_abs_difference", 0.0))
    return (f"converted from {conversion['from'].upper()} by {conversion['converter']}; its outputs are within "
            f"{largest:.2g} of {conversion['checked_against']} on {checked} (tolerance {conversion['tolerance']:.2g})")


def _evaluated(report: dict, facts: _Facts) -> list[dict]:
    return [r for r in report["runs"] if r.get("purpose", "evaluation") == "evaluation"
            and r["eps"] is not None and str(r.get("norm", "inf")) == facts.norm]


def _threat_model(report: dict, facts: _Facts) -> ThreatModel:
    attacks = list(dict.fromkeys(r["attack"] for r in _evaluated(report, facts)))
    suite = report.get("suite")
    members = [m for m in (suite or {}).get("members", []) if m.get("ran")]
    black_box = [m["ran"] for m in members if m.get("black_box")]
    named = attacks + [f"suite {suite['ran']}: {', '.join(m['ran'] for m in members)}"] if suite else attacks
    attacker = [
        "White-box: the attacker knows the model's weights and follows its exact gradients.",
        "Untargeted: any wrong class counts; an image counts as robust only if no attack broke it "
        "(the worst case is taken per image, over every attack).",
    ]
    if black_box:
        attacker.append(f"{', '.join(black_box)} sees only the model's outputs (black-box): it checks "
                        "that the gradients did not mislead the white-box attacks.")
    if report.get("defenses"):
        views = "; ".join(f"{d['defense']['plugin']}: {d['adaptive_view']}" for d in report["defenses"])
        attacker.append("Each defense is attacked adaptively, by an attacker who knows it and attacks through "
                        f"it ({views}). Non-adaptive numbers are never claimed here.")
    else:
        attacker.append("No preprocessing defense was evaluated: the numbers are the bare model's.")
    guarded = [d for d in report.get("detectors", []) if d.get("guard")]
    if guarded and facts.config.get("adaptive_detectors", True):
        attacker.append("Each detector is attacked by an attacker who knows it (its score in the loss): a "
                        "guard's number is the share of attacked scans classified right or flagged.")
    elif report.get("detectors"):
        attacker.append("The detectors were not attacked adaptively (turned off): their numbers overstate them.")
    else:
        attacker.append("No detector was tested.")
    attacker.append(f"Randomness is drawn per image from seed {facts.config['seed']}: the same config gives "
                    "the same result for any batch size.")
    budgets = [Budget(eps=e, key=k, words=facts.words(e)) for e, k in zip(facts.eps, facts.keys)]
    return ThreatModel(norm=facts.norm, norm_name=norm_name(facts.norm), budgets=budgets,
                       attacker=attacker, attacks=named)


def _accuracy(report: dict, facts: _Facts) -> Accuracy:
    runs = _evaluated(report, facts)
    suite = report.get("suite")
    budgets = []
    for eps, key in zip(facts.eps, facts.keys):
        if key not in report["worst_case_robust_accuracy"]:
            continue
        per_attack = {r["attack"]: facts.of(r["robust_accuracy"]) for r in runs if math.isclose(r["eps"], eps)}
        for s in (suite or {}).get("runs", []):
            if math.isclose(s["eps"], eps):
                per_attack[f"suite {suite['ran']}"] = facts.of(s["robust_accuracy"])
        per_class = {name: facts.of(acc, facts.counts.get(name, 0))
                     for name, acc in _per_class_at(report, key).items()}
        budgets.append(BudgetAccuracy(key=key, words=facts.words(eps), per_class=per_class,
                                      robust=facts.of(report["worst_case_robust_accuracy"][key]),
                                      per_attack=per_attack))
    over = list(dict.fromkeys(r["attack"] for r in runs)) + ([f"the {suite['ran']} suite"] if suite else [])
    return Accuracy(
        clean=facts.of(report["clean_accuracy"]),
        clean_per_class={name: facts.of(acc, facts.counts.get(name, 0))
                         for name, acc in report["clean_per_class_accuracy"].items()},
        budgets=budgets, headline=f"the per-image worst case over {', '.join(over) or 'no attack'}")


def _per_class_at(report: dict, key: str) -> dict[str, float]:
    return {name: by_eps[key] for name, by_eps in report["worst_case_per_class"].items() if key in by_eps}


def _flips(report: dict, facts: _Facts, override: str | None) -> Flips:
    recorded = facts.data.get("negative_class") or {"name": None, "source": "not declared"}
    if override is not None:
        if override not in facts.names:
            raise InputError(f"--negative-class '{override}' is not one of the model's classes {facts.names}")
        recorded = {"name": override, "source": "declared"}
    negative = recorded["name"]
    per_image = report["per_image"]

    def table(key, predicted) -> FlipTable:
        flips = flip_matrix(per_image["labels"], predicted, facts.names, negative)
        k = facts.names.index(negative) if negative else None
        return FlipTable(
            key=key, classes=facts.names, counts=flips.counts.tolist(), images=flips.images,
            missed_findings=flips.missed_findings if negative else None,
            false_alarms=flips.false_alarms if negative else None,
            wrong_findings=flips.wrong_findings if negative else None,
            positives=int(flips.counts.sum() - flips.counts[k].sum()) if negative else None,
            negatives=int(flips.counts[k].sum()) if negative else None)

    attacked = [table(key, per_image["worst_case_pred"][key]) for key in facts.keys
                if key in per_image["worst_case_pred"]]
    return Flips(negative_class=negative, negative_source=recorded["source"],
                 clean=table(None, per_image["clean_pred"]), attacked=attacked)


def _defenses(report: dict, facts: _Facts) -> list[DefenseEvidence]:
    return [DefenseEvidence(
        name=d["defense"]["plugin"], title=d["title"], view=d["adaptive_view"], clean=facts.of(d["clean_accuracy"]),
        adaptive={key: facts.of(v["adaptive"]) for key, v in d["worst_case_robust_accuracy"].items()},
        masking=d.get("gradient_masking")) for d in report.get("defenses", [])]


def _guards(report: dict, facts: _Facts) -> list[GuardEvidence]:
    guards = []
    for d in report.get("detectors", []):
        guard = d.get("guard")
        if not guard:
            continue
        n = int(guard["images"])
        rows = {True: {}, False: {}}
        for run in guard["runs"]:
            rows[bool(run["adaptive"])][eps_key(run["eps"])] = facts.of(run["guarded_robust_accuracy"], run["images"])
        guards.append(GuardEvidence(
            name=d["detector"]["plugin"], title=d["title"], clean_flagged=facts.of(guard["clean_flagged"], n),
            adaptive=rows[True], non_adaptive=rows[False], threshold_fails=guard.get("threshold_fails"),
            note=d.get("note")))
    return guards


# ---- the first screen and the limitations ---------------------------------------------------
def _summary(facts: _Facts, *, identity: Identity, threat_model: ThreatModel, accuracy: Accuracy,
             flips: Flips, certification, defenses, guards, checks) -> list[str]:
    short = f" (SHA-256 {identity.model_sha256[:12]}…)" if identity.model_sha256 else ""
    split = f", {identity.split} split" if identity.split and identity.split != "all" else ""
    lines = [
        f"Tested: the model {identity.model_name}{short} on {identity.images} images of {identity.data_source}"
        f"{split}, {len(facts.names)} classes ({', '.join(facts.names)}).",
        f"Against: white-box {threat_model.norm_name} attacks ({', '.join(threat_model.attacks) or 'none'}) at "
        f"budgets {', '.join(facts.keys)}; the largest: {threat_model.budgets[-1].words}.",
        f"Clean accuracy {accuracy.clean.text}.",
    ]
    for b in accuracy.budgets:
        lines.append(f"At {b.key}: at most {b.robust.text} of the images stay correctly classified under attack.")
    if flips.negative_class and flips.attacked:
        worst = flips.attacked[-1]
        lines.append(
            f"At {worst.key}, with '{flips.negative_class}' as no finding: {worst.missed_findings} of "
            f"{worst.positives} scans with a finding are called '{flips.negative_class}' (missed findings; "
            f"{flips.clean.missed_findings} without attack), {worst.false_alarms} of {worst.negatives} "
            f"'{flips.negative_class}' scans are called a finding (false alarms; {flips.clean.false_alarms} "
            "without attack).")
    if certification is not None:
        parts = ", ".join(f"{r.certified.value:.1%} at L2 radius {r.radius:.3g} (CI up to {r.certified.high:.1%})"
                          for r in certification.radii)
        lines.append(f"Certified lower bound, for the smoothed model (randomized smoothing, σ = "
                     f"{certification.sigma:g}; abstains on {certification.abstained.value:.0%}): {parts}.")
    for d in defenses:
        held = ", ".join(f"{k}: {v.text}" for k, v in d.adaptive.items())
        lines.append(f"Defense {d.name}, attacked adaptively: {held}.")
    for g in guards:
        held = ", ".join(f"{k}: {v.text}" for k, v in g.adaptive.items())
        if held:
            lines.append(f"Guard {g.name} (classified right or flagged, attacker knowing it): {held}.")
    failed = [c.name for c in checks if c.state == "failed"]
    ran = [c for c in checks if c.state != "not applicable"]
    if failed:
        lines.append(f"{len(failed)} of {len(ran)} sanity checks that ran FAILED ({', '.join(failed)}): "
                     "read them before any number above.")
    elif ran:
        lines.append(f"All {len(ran)} sanity checks that ran passed ({len(checks) - len(ran)} not applicable).")
    return lines


def _limitations(report: dict, facts: _Facts, *, identity: Identity, threat_model: ThreatModel,
                 accuracy: Accuracy, flips: Flips, certification, defenses, guards, checks) -> list[str]:
    out = ["Every robust accuracy here is an upper bound: attacks found these errors; a stronger attack "
           "may find more."]
    if facts.data.get("synthetic"):
        out.append(f"The images ({identity.data_source}) are generated, not patient scans: the numbers say "
                   "nothing about the model on clinical data.")
    if facts.n < SMALL_SAMPLE:
        out.append(f"Only {facts.n} images: every interval is wide; evaluate more images before leaning on it.")
    small = [name for name, n in facts.counts.items() if 0 < n < SMALL_SAMPLE]
    if small and facts.n >= SMALL_SAMPLE:
        out.append(f"Fewer than {SMALL_SAMPLE} images in {', '.join(small)}: their per-class intervals are wide.")
    if identity.selection and facts.data["subset"]["images"] != facts.data["subset"]["available"]:
        out.append(f"A subset was evaluated: {identity.selection}.")
    if len(facts.eps) == 1:
        out.append(f"One budget only ({facts.keys[0]}): how accuracy falls as the attacker grows is not shown.")
    out.append(f"Only the {threat_model.norm_name} threat model was tested; attackers bounded in other norms "
               "(or by patches, rotations, scanner changes) were not.")
    if not report.get("suite"):
        out.append("No reference-grade suite ran (AutoAttack's standard): run with --suite standard for the "
                   "number the field compares.")
    if not defenses:
        out.append("No defense was evaluated.")
    if not report.get("detectors"):
        out.append("No detector was tested: nothing here says an attacked scan would be flagged.")
    if certification is None:
        out.append("No certified lower bound was computed (egide card --certify): the true robust accuracy "
                   "may lie anywhere below the attacks' numbers.")
    if flips.negative_class is None:
        out.append("No class was declared as 'no finding' (--negative-class): flips are not told apart into "
                   "missed findings and false alarms.")
    if identity.model_sha256 is None:
        out.append("The model was given in memory, not as a file: there is no file hash to check it against.")
    for c in checks:
        if c.state == "not applicable":
            out.append(f"Check '{c.name}' could not run: {c.message.removeprefix('Not applicable: ')}")
    return out
