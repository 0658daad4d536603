"""How well a guard (a classifier and a fitted detector) holds: against an attacker who ignores
the detector, and against one who knows it.

For each budget, two attackers make adversarial versions of the test images:

- non-adaptive: attacks on the classifier alone (the detector does not exist for them), as in
  the detector papers' own tables: PGD, or the examples the caller already made (an evaluation's
  attacks), per image the worst case over them;
- adaptive: the detector-aware attack (`attack.GuardAttack`), per image the worst case of
  it and the non-adaptive ones (an attacker who knows the guard may also ignore it), so the
  adaptive number is never above the non-adaptive one.

Each row reports the numbers a clinic needs about the images an attack makes:
- guarded robust accuracy: the share of attacked scans that are still classified correctly or
  flagged — what the guard protects;
- robust accuracy: the classifier alone on the same images;
- detection rate at the fitted threshold and ROC AUC, among the examples that fool the classifier
  (from images it classified correctly), against the clean test images' scores.
A guard "falls to the adaptive attack" at a budget when the adaptive guarded robust accuracy is
more than FALL_GAP below the non-adaptive one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from egide.core.classifier import Classifier
from egide.core.detector import Detector
from egide.core.errors import InputError
from egide.lab.choices import reference_attack, surrogate_detector
from egide.lab.guard.attack import GuardAttack

FALL_GAP = 0.10


@dataclass
class GuardRun:
    """One attack on the guard at one budget."""

    attack: str  # the non-adaptive attacks ("pgd", "fgsm+pgd") or "adaptive (orthogonal)"
    adaptive: bool
    eps: float
    norm: str
    images: int
    guarded_robust_accuracy: float  # classified correctly or flagged
    robust_accuracy: float  # classified correctly (the classifier alone)
    detection_rate: float | None  # flagged, among the examples that fool the classifier
    roc_auc: float | None  # those examples' scores against the clean test images'
    positives: int  # examples that fool the classifier, from correctly classified images
    seconds: float
    through: str | None = None  # adaptive: how the detector's gradient was had

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GuardEvaluation:
    detector: dict  # the detector's config (plugin, version, params)
    threshold: float
    images: int
    clean_accuracy: float
    clean_flagged: float  # false-positive rate on the clean test images
    runs: list[GuardRun] = field(default_factory=list)
    target_fpr: float | None = None  # the false-positive rate the threshold was fitted for

    def threshold_fails(self) -> str | None:
        """A sentence when the threshold flags far more clean scans than it was fitted for (twice
        its rate, and 10 points over it): then "classified correctly or flagged" is high because
        everything is flagged, and the guarded numbers mean nothing. Too few or unlike fit images
        do this."""
        fpr = self.target_fpr if self.target_fpr is not None else 0.05
        if self.clean_flagged <= max(2 * fpr, fpr + 0.10):
            return None
        return (f"it flags {self.clean_flagged:.0%} of the clean scans where it was fitted for {fpr:.0%}: its "
                "threshold does not hold on these images (too few or unlike fit images), so its guarded "
                "robust accuracy means nothing")

    def pairs(self) -> list[tuple[GuardRun, GuardRun | None]]:
        """(non-adaptive, adaptive or None) per budget, in the order run."""
        plain = [r for r in self.runs if not r.adaptive]
        return [(r, next((a for a in self.runs if a.adaptive and a.eps == r.eps and a.norm == r.norm),
                         None)) for r in plain]

    def falls(self) -> dict[float, bool]:
        """Per budget: does the adaptive attack take the guarded accuracy far below?"""
        return {p.eps: a is not None and p.guarded_robust_accuracy - a.guarded_robust_accuracy > FALL_GAP
                for p, a in self.pairs()}

    def to_dict(self) -> dict:
        return {"detector": self.detector, "threshold": self.threshold, "images": self.images,
                "clean_accuracy": self.clean_accuracy, "clean_flagged": self.clean_flagged,
                "target_fpr": self.target_fpr, "threshold_fails": self.threshold_fails(),
                "runs": [r.to_dict() for r in self.runs],
                "falls_to_adaptive_attack": {str(k): v for k, v in self.falls().items()}}


def evaluate_guard(clf: Classifier, det: Detector, x, y, eps, *, norm: str = "inf", steps: int = 50,
                   restarts: int = 1, mode: str = "orthogonal", adaptive: bool = True, seed: int = 0,
                   batch_size: int | None = None, surrogate: Detector | None = None,
                   non_adaptive: dict[float, dict[str, np.ndarray]] | None = None,
                   registry=None, progress=None, executor=None) -> GuardEvaluation:
    """Attack the guard (clf, det) at each budget in `eps` (a number or a list), without and
    with knowledge of the detector; `det` must be fitted on other images than x.

    non_adaptive: {eps: {attack name: adversarial x}} already made on the classifier alone (an
    evaluation's); a budget without them gets PGD with `steps` steps. The adaptive attacks of
    every budget run first, as one group: on a Ray executor, all their batches at once."""
    from egide.core.registry import registry as default_registry
    from egide.lab.evaluation.running import LocalExecutor

    reg = registry or default_registry()
    x = clf.check_inputs(x)
    y = clf.check_labels(y, len(x))
    budgets = [float(e) for e in (eps if isinstance(eps, (list, tuple, np.ndarray)) else [eps])]
    if not budgets:
        raise InputError("evaluate_guard: give at least one eps")
    clean_scores = det.score(clf, x)
    clean_ok = clf.predict(x) == y
    result = GuardEvaluation(
        detector=det.config(), threshold=float(det.threshold), images=len(x),
        clean_accuracy=float(clean_ok.mean()), clean_flagged=float((clean_scores > det.threshold).mean()),
        target_fpr=getattr(det, "fpr", None))
    found = {}
    if adaptive:
        if det.score_gradient is None and surrogate is None:
            surrogate = reg.create("detector", surrogate_detector(reg)).fit(clf, x)
        attacks = [GuardAttack(eps=e, norm=norm, steps=steps, restarts=restarts, mode=mode) for e in budgets]
        group = (executor or LocalExecutor()).run_guard_attacks(
            attacks, clf, det, surrogate, x, y, batch_size=batch_size, seed=seed,
            progress=(lambda done, total, _label: progress(done, total)) if progress else None)
        found = dict(zip(budgets, group))
    for e in budgets:
        started = time.perf_counter()
        made = _near(non_adaptive or {}, e)
        if not made:
            name = reference_attack(reg)
            attack = reg.create("attack", name, eps=e, norm=norm, steps=steps, restarts=restarts)
            made = {name: attack.run(clf, x, y, seed=seed, batch_size=batch_size).x_adv}
        plain_adv, run = _worst_case(clf, det, x, y, made, clean_ok, clean_scores)
        result.runs.append(GuardRun(attack="+".join(made), adaptive=False, eps=e, norm=norm,
                                    images=len(x), seconds=time.perf_counter() - started,
                                    **run["numbers"]))
        if not adaptive:
            continue
        started = time.perf_counter()
        adaptive_run = _judged(clf, det, x, y, found[e].x_adv, clean_ok, clean_scores)
        # The worst case per image: where only the non-adaptive example passes the guard, take it.
        take_plain = run["evaded"] & ~adaptive_run["evaded"]
        worst = np.where(take_plain.reshape((-1,) + (1,) * (plain_adv.ndim - 1)), plain_adv, found[e].x_adv)
        numbers = _judged(clf, det, x, y, worst, clean_ok, clean_scores)["numbers"]
        result.runs.append(GuardRun(attack=f"adaptive ({mode})", adaptive=True, eps=e, norm=norm,
                                    images=len(x), seconds=found[e].seconds + time.perf_counter() - started,
                                    through=found[e].through, **numbers))
    return result


def _near(table: dict, eps: float) -> dict:
    return next((v for k, v in table.items() if k is not None and np.isclose(k, eps)), {})


def _worst_case(clf, det, x, y, made: dict[str, np.ndarray], clean_ok, clean_scores):
    """Per image, the first attack's example that passes the guard, else the first attack's."""
    names = list(made)
    judged = {n: _judged(clf, det, x, y, made[n], clean_ok, clean_scores) for n in names}
    if len(names) == 1:
        return made[names[0]], judged[names[0]]
    worst = made[names[0]].copy()
    taken = judged[names[0]]["evaded"].copy()
    for n in names[1:]:
        use = judged[n]["evaded"] & ~taken
        worst[use] = made[n][use]
        taken |= use
    return worst, _judged(clf, det, x, y, worst, clean_ok, clean_scores)


def _judged(clf, det, x, y, x_adv, clean_ok, clean_scores) -> dict:
    """The guard's verdict on attacked images, on the real detector's exact scores."""
    from sklearn.metrics import roc_auc_score

    scores = det.score(clf, x_adv)
    flagged = scores > det.threshold
    correct = clf.predict(x_adv) == y
    positives = ~correct & clean_ok
    auc = None
    if positives.any():
        labels = np.r_[np.zeros(len(clean_scores)), np.ones(int(positives.sum()))]
        auc = float(roc_auc_score(labels, np.r_[clean_scores, scores[positives]]))
    return {
        "evaded": ~correct & ~flagged,
        "numbers": {
            "guarded_robust_accuracy": float((correct | flagged).mean()),
            "robust_accuracy": float(correct.mean()),
            "detection_rate": float(flagged[positives].mean()) if positives.any() else None,
            "roc_auc": auc,
            "positives": int(positives.sum()),
        },
    }
