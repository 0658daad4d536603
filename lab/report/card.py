"""The robustness card's data model: what a review board files about a model's robustness.

A card is data first. `card_build.build_card` fills it from a finished evaluation (its
report.json) and, when asked, a randomized-smoothing certification; card.json is its JSON form
(two cards diff line by line); the HTML page and the PDF both render this one model, through
the same layout (`card_layout.py`), so they never disagree.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .intervals import Proportion

CARD_SCHEMA = "egide-robustness-card/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(_Frozen):
    """k of n with its exact 95% (Clopper–Pearson) interval, and its text."""

    k: int
    n: int
    value: float | None
    low: float
    high: float
    confidence: float
    small_sample: bool  # too few images for the interval to be leaned on
    text: str

    @classmethod
    def of(cls, p: Proportion) -> "Interval":
        return cls(k=p.k, n=p.n, value=p.value, low=p.low, high=p.high, confidence=p.confidence,
                   small_sample=p.small_sample, text=p.text())


class Identity(_Frozen):
    """What exactly was tested, so anyone can later prove which model and images the numbers
    belong to (hashes defined in `identity.py`)."""

    model_name: str
    model_file: str | None
    model_sha256: str | None
    data_source: str
    split: str | None
    images: int
    image_shape: list[int]
    images_sha256: str | None
    labels_sha256: str | None
    selection: str | None  # how a limit drew the images, in words
    classes: dict[int, str]  # model output index -> class name
    class_counts: dict[str, int]
    input_range: list[float]
    input_range_source: str
    logits: str  # where the logits came from (the model's output, or recovered before a softmax)
    conversion: str | None = None  # a model converted from another format: how, and how it was checked
    seed: int
    versions: dict[str, str]
    plugins: dict[str, str | None]
    replay: dict  # the exact evaluation config: `egide evaluate --config` on it runs it again


class Budget(_Frozen):
    eps: float
    key: str  # e.g. "4/255"
    words: str  # what it lets an attacker do to a scan, in pixel terms


class ThreatModel(_Frozen):
    norm: str  # "inf", "2", "1"
    norm_name: str
    budgets: list[Budget]
    attacker: list[str]  # sentences: white-box or not, adaptive or not, what it knows
    attacks: list[str]  # the attacks and suite members that ran


class BudgetAccuracy(_Frozen):
    key: str
    words: str
    robust: Interval  # the per-image worst case over every attack at this budget
    per_class: dict[str, Interval]
    per_attack: dict[str, Interval]


class Accuracy(_Frozen):
    clean: Interval
    clean_per_class: dict[str, Interval]
    budgets: list[BudgetAccuracy]
    headline: str  # which attacks the worst case is over


class FlipTable(_Frozen):
    """True class (rows) x class given (columns), at one budget (None: clean images)."""

    key: str | None
    classes: list[str]
    counts: list[list[int]]
    images: int
    missed_findings: int | None  # None without a negative class
    false_alarms: int | None
    wrong_findings: int | None
    positives: int | None  # images whose true class is a finding
    negatives: int | None


class Flips(_Frozen):
    negative_class: str | None
    negative_source: str
    clean: FlipTable
    attacked: list[FlipTable]


class CertifiedRadius(_Frozen):
    key: str  # the evaluation budget it matches
    radius: float  # the L2 radius certified at
    certified: Interval  # certified correct with at least this radius
    attack_bound: Interval | None  # the attacks' upper bound at the same budget, for the same model


class Certification(_Frozen):
    """A lower bound: Cohen et al.'s randomized-smoothing certificate, which holds for the
    smoothed classifier (the model with Gaussian noise of `sigma` added and a majority vote)."""

    defense: str  # which model the bound is for, in words
    sigma: float
    n0: int
    n: int
    alpha: float
    abstained: Interval  # images the smoothed vote could not certify at any radius
    radii: list[CertifiedRadius]
    radius_rule: str  # how an evaluation budget became an L2 radius
    seconds: float


class DefenseEvidence(_Frozen):
    name: str
    title: str
    view: str  # how the adaptive attacker sees it
    clean: Interval
    adaptive: dict[str, Interval]  # budget key -> worst case against the adaptive attacker
    masking: str | None


class GuardEvidence(_Frozen):
    name: str
    title: str
    clean_flagged: Interval  # clean scans the guard flags (its false-alarm rate)
    adaptive: dict[str, Interval]  # budget key -> classified right or flagged, attacker knowing it
    non_adaptive: dict[str, Interval]
    threshold_fails: str | None
    note: str | None


class Check(_Frozen):
    name: str
    state: str  # failed, not applicable, passed
    message: str


class RobustnessCard(_Frozen):
    card_schema: str = CARD_SCHEMA
    title: str
    created: str  # the only field that differs between two cards of the same run
    egide: str
    summary: list[str]  # the first screen, in plain words
    identity: Identity
    threat_model: ThreatModel
    accuracy: Accuracy
    flips: Flips
    certification: Certification | None
    defenses: list[DefenseEvidence]
    guards: list[GuardEvidence]
    checks: list[Check]
    limitations: list[str]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)
