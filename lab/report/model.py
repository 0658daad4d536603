"""The evaluation report's data model: every number of a run, as plain dataclasses.

A leaf module (numpy only): the pipeline fills it, `to_dict()` gives report.json, and the
renderers (`html.py`, through `write_report`) only read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ROC_POINTS = 120  # points kept per ROC curve in the report
TARGET_FPR = 0.05  # the operating point the detector tables quote


@dataclass
class AttackRun:
    """One attack at one epsilon (eps is None for minimal-perturbation attacks like C&W)."""

    attack: str
    eps: float | None
    params: dict
    version: str | None
    robust_accuracy: float
    success_rate: float
    l2_mean: float
    linf_max: float
    seconds: float
    per_class: dict[str, float]
    robust: np.ndarray = field(repr=False)  # per sample: still correctly classified
    l2: np.ndarray = field(repr=False)
    norm: str = "inf"
    purpose: str = "evaluation"  # or "sanity": the unbounded run of the sanity checks
    size: np.ndarray | None = field(repr=False, default=None)  # per sample, in `norm`
    adv_pred: np.ndarray | None = field(repr=False, default=None)  # per sample: the class under attack

    def to_dict(self) -> dict:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "norm": self.norm,
            "params": self.params,
            "version": self.version,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "l2_mean": self.l2_mean,
            "linf_max": self.linf_max,
            "seconds": round(self.seconds, 3),
            "per_class_robust_accuracy": self.per_class,
            "purpose": self.purpose,
        }


NOT_APPLICABLE = "not applicable"


@dataclass
class SanityCheck:
    """One check of the evaluation: passed (True), failed (False) or not applicable (None: what
    it compares was not in the run; the message says why). Only checks that ran are counted."""

    name: str
    passed: bool | None
    message: str  # what was seen and what it means, or why the check could not run

    @property
    def state(self) -> str:
        return NOT_APPLICABLE if self.passed is None else "passed" if self.passed else "failed"

    @property
    def ran(self) -> bool:
        return self.passed is not None

    def to_dict(self) -> dict:
        return {"name": self.name, "state": self.state, "passed": self.passed, "message": self.message}


@dataclass
class GalleryItem:
    index: int
    label: str
    clean: np.ndarray
    adversarial: np.ndarray
    clean_pred: str
    clean_confidence: float
    adv_pred: str
    adv_confidence: float
    attack: str
    eps: float


@dataclass
class MinimalPerturbations:
    """What a minimal-perturbation attack (budget "minimal") needed to break each image."""

    attack: str
    title: str
    norm: str  # the norm it minimises: "2" or "inf"
    values: list[float]  # the size of each successful adversarial perturbation

    def to_dict(self) -> dict:
        return {"attack": self.attack, "title": self.title, "norm": self.norm, "values": self.values}


@dataclass
class Report:
    config: dict
    environment: dict
    model: dict
    data: dict
    clean_accuracy: float
    clean_per_class: dict[str, float]
    runs: list[AttackRun]
    worst_case: dict[str, float]  # eps (as text) -> accuracy over every L-inf attack
    worst_case_per_class: dict[str, dict[str, float]]
    minimal: list[MinimalPerturbations]  # one per minimal-perturbation attack
    sanity: list[SanityCheck]
    gallery: list[GalleryItem]
    seconds: float
    defenses: list = field(default_factory=list)  # DefenseReport, one per preprocessing defense
    detectors: list = field(default_factory=list)  # DetectorReport, one per detector
    suite: SuiteReport | None = None  # the reference-grade protocol, when one ran
    # Per image, in evaluation order: labels, clean predictions, and per budget the class the
    # worst case drove each image to (what a robustness card's flip matrix counts)
    per_image: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "config": self.config,
            "environment": self.environment,
            "model": self.model,
            "data": self.data,
            "clean_accuracy": self.clean_accuracy,
            "clean_per_class_accuracy": self.clean_per_class,
            "runs": [r.to_dict() for r in self.runs],
            "worst_case_robust_accuracy": self.worst_case,
            "worst_case_per_class": self.worst_case_per_class,
            "minimal_perturbations": [m.to_dict() for m in self.minimal],
            "sanity_checks": [s.to_dict() for s in self.sanity],
            "gallery": [
                {k: v for k, v in vars(g).items() if k not in ("clean", "adversarial")}
                for g in self.gallery
            ],
            "defenses": [d.to_dict() for d in self.defenses],
            "detectors": [d.to_dict() for d in self.detectors],
            "suite": self.suite.to_dict() if self.suite else None,
            "per_image": self.per_image,
            "seconds": round(self.seconds, 3),
        }



def eps_key(eps: float) -> str:
    """A readable, stable key for an epsilon: '4/255' for whole grey levels; '0.5/255' for half
    ones that have no short decimal (0.1 is 25.5/255 but reads better as 0.1); else the number.
    From 1 up (the whole range, an L2 or L1 size) always the number: 4, not 1020/255."""
    levels = float(eps) * 255
    if levels >= 255 - 1e-6:
        return f"{float(eps):.6g}"
    if math.isclose(levels, round(levels), abs_tol=1e-6) and levels >= 0.5:
        return f"{round(levels):d}/255"
    short = f"{float(eps):.4g}"
    if math.isclose(levels * 2, round(levels * 2), abs_tol=1e-6) and float(short) != float(eps):
        return f"{round(levels * 2) / 2:g}/255"
    return f"{float(eps):.6g}"


@dataclass
class DefenseRun:
    """One attack at one budget against one defense, attacked both ways."""

    attack: str
    eps: float | None
    non_adaptive: float  # robust accuracy of the defended classifier
    adaptive: float
    non_adaptive_success: float
    adaptive_success: float
    seconds: float

    def to_dict(self) -> dict:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "robust_accuracy": {"non_adaptive": self.non_adaptive, "adaptive": self.adaptive},
            "success_rate": {"non_adaptive": self.non_adaptive_success, "adaptive": self.adaptive_success},
            "seconds": round(self.seconds, 3),
        }


@dataclass
class DefenseReport:
    config: dict  # plugin, version, params
    title: str
    view: str  # how the adaptive attacker sees it: BPDA, EOT, exact gradient
    clean_accuracy: float
    runs: list[DefenseRun]
    worst_case: dict[str, dict[str, float]]  # eps key -> {"non_adaptive": .., "adaptive": ..}
    masking: str | None  # a sentence when non-adaptive numbers overstate the defense

    @property
    def name(self) -> str:
        return self.config["plugin"]

    def to_dict(self) -> dict:
        return {
            "defense": self.config,
            "title": self.title,
            "adaptive_view": self.view,
            "clean_accuracy": self.clean_accuracy,
            "runs": [r.to_dict() for r in self.runs],
            "worst_case_robust_accuracy": self.worst_case,
            "gradient_masking": self.masking,
        }


@dataclass
class DetectionRun:
    """One fitted detector against one attack at one budget."""

    attack: str
    eps: float | None
    fitted_on: str | None  # the attack a supervised detector was fitted on; None if unsupervised
    auc: float
    tpr_at_fpr: float  # true-positive rate where the ROC's false-positive rate is TARGET_FPR
    detection_rate: float  # share of positives above the fitted threshold
    false_positive_rate: float  # share of clean test images above the fitted threshold
    threshold: float
    positives: int
    roc: list[list[float]] = field(repr=False, default_factory=list)  # [[fpr, tpr], ...]

    def to_dict(self) -> dict:
        return {
            "attack": self.attack,
            "eps": self.eps,
            "fitted_on": self.fitted_on,
            "roc_auc": self.auc,
            f"tpr_at_{round(100 * TARGET_FPR)}pct_fpr": self.tpr_at_fpr,
            "detection_rate_at_threshold": self.detection_rate,
            "false_positive_rate_at_threshold": self.false_positive_rate,
            "threshold": self.threshold,
            "positives": self.positives,
            "roc": self.roc,
        }


@dataclass
class DetectorReport:
    config: dict
    title: str
    supervised: bool
    fit_images: int
    fit_seconds: float  # for a supervised detector: the mean over its fits
    score_rate: float  # images scored per second
    runs: list[DetectionRun]
    transfer: dict[str, dict[str, float]]  # fitted on -> tested on -> AUC, at the detection eps
    detection_eps: float
    note: str | None = None
    guard: object | None = None  # a GuardEvaluation: attacked without and with knowledge of it

    @property
    def name(self) -> str:
        return self.config["plugin"]

    def to_dict(self) -> dict:
        return {
            "detector": self.config,
            "title": self.title,
            "supervised": self.supervised,
            "fit_images": self.fit_images,
            "fit_seconds": round(self.fit_seconds, 3),
            "score_images_per_second": round(self.score_rate, 1),
            "detection_eps": self.detection_eps,
            "runs": [r.to_dict() for r in self.runs],
            "transfer_auc": self.transfer,
            "note": self.note,
            "guard": None if self.guard is None else self.guard.to_dict(),
        }


@dataclass
class SuiteMember:
    """One attack of a reference protocol and its fate: the variant that ran, or why none did."""

    label: str  # its name in the protocol, e.g. "apgd-t"
    ran: str | None  # the variant that ran (the same, a fallback), or None when left out
    plugin: str
    params: dict
    black_box: bool = False
    note: str | None = None  # why it was replaced or left out

    def to_dict(self) -> dict:
        return {"label": self.label, "ran": self.ran, "plugin": self.plugin, "params": self.params,
                "black_box": self.black_box, "note": self.note}


@dataclass
class SuiteRun:
    """A protocol at one budget: robust accuracy after each member, and who broke each point."""

    eps: float
    robust_accuracy: float  # the per-point worst case over the whole ensemble
    after: list[float]  # robust accuracy after each member, in order
    seconds: list[float]
    robust: np.ndarray = field(repr=False)
    broken_by: np.ndarray = field(repr=False)  # per point: the first member that broke it, or ""
    masking: str | None = None
    adv_pred: np.ndarray | None = field(repr=False, default=None)  # per point: its class once broken

    def to_dict(self) -> dict:
        labels, counts = np.unique(self.broken_by[self.broken_by != ""], return_counts=True)
        return {
            "eps": self.eps,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_after": self.after,
            "seconds": [round(s, 3) for s in self.seconds],
            "broken_first_by": {str(k): int(v) for k, v in zip(labels, counts)},
            "broken_by_per_point": [str(b) or None for b in self.broken_by],
            "gradient_masking": self.masking,
        }


@dataclass
class SuiteReport:
    """An AutoAttack-standard (or quick, plus, rand) evaluation over every budget."""

    protocol: str  # what was asked
    ran: str  # what ran: "rand" when the model turned out randomized
    randomized: bool
    norm: str
    members: list[SuiteMember]
    runs: list[SuiteRun]

    def at(self, eps: float) -> SuiteRun | None:
        return next((r for r in self.runs if math.isclose(r.eps, eps)), None)

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "ran": self.ran, "randomized": self.randomized,
                "norm": self.norm, "members": [m.to_dict() for m in self.members],
                "runs": [r.to_dict() for r in self.runs]}
