"""Evaluating detectors: ROC per attack and epsilon, and a transfer table for supervised ones.

As in the papers, positives are adversarial examples that fooled the model (made from images it
classified correctly), negatives are the clean test images. Detectors are fitted on another split
(the training split by default), never on the images they are scored on.

An unsupervised detector is fitted once, on clean images, and one threshold serves every attack.
A supervised detector is fitted once per attack, on that attack's adversarial examples at the
detection budget, and then tested on every attack: the transfer table shows whether it learned
to detect attacks or only to recognise the one it saw.

Then, unless the configuration turns it off (`adaptive_detectors`), each detector is attacked as
part of a guard (`lab/guard/evaluation.py`): at every budget, the evaluation's own examples
(made without knowledge of the detector) against the detector-aware attack. A supervised
detector is attacked in its instance fitted on PGD (else on the first attack it was fitted on).
"""

from __future__ import annotations

import math
import time

import numpy as np

from egide.core.errors import InputError
from egide.lab.choices import reference_attack
from egide.lab.evaluation.running import LocalExecutor, plan_attack
from egide.lab.report.model import ROC_POINTS, TARGET_FPR, DetectionRun, DetectorReport


def check_detector(reg, spec):
    """The detector class, with its parameters validated before any work starts."""
    cls = reg.get("detector", spec.plugin)
    cls.validate_params(dict(spec.params))
    return cls, spec


def evaluate_detectors(specs, reg, clf, x, y, clean_ok, adversarials, attacks, fit_x, fit_y,
                       config, counter, executor=None) -> list[DetectorReport]:
    """Fit each detector and score it against every (attack, eps) of the evaluation."""
    detection_eps = config.detection_budget()
    positives = {
        key: res.x_adv[res.success & clean_ok] for key, res in adversarials.items()
    }
    fit_clean_ok = clf.predict(fit_x, batch_size=config.batch_size) == fit_y
    fit_examples: dict[str, np.ndarray] = {}
    if any(cls.supervised for cls, _ in specs):
        # What supervised detectors learn from: each attack's examples of the fit images, made
        # at the detection budget as one group (on Ray, all at once).
        jobs = [plan_attack(a, s, detection_eps if a.budget == "fixed" else None, clf, clf, fit_x, fit_y)
                for a, s in attacks]
        results = (executor or LocalExecutor()).run_all(
            jobs, batch_size=config.batch_size, seed=config.seed,
            progress=lambda done, total, label: counter.progress_label(
                f"{label} on {len(fit_x)} fit images for supervised detectors"))
        for job, res in zip(jobs, results):
            fit_examples[job.attack.name] = res.x_adv[res.success & fit_clean_ok]
    reports = []
    for cls, spec in specs:
        if cls.supervised:
            report, fitted = _supervised(cls, spec, reg, clf, x, positives, attacks, fit_x,
                                         fit_clean_ok, fit_examples, detection_eps, counter)
        else:
            report, fitted = _unsupervised(cls, spec, reg, clf, x, positives, fit_x, detection_eps,
                                           counter)
        if config.adaptive_detectors and fitted is not None:
            report.guard = _attacked_as_guard(fitted, reg, clf, x, y, adversarials, config, counter,
                                              executor)
        reports.append(report)
    return reports


def _attacked_as_guard(det, reg, clf, x, y, adversarials, config, counter, executor=None):
    """The guard (clf, det) under the evaluation's non-adaptive examples and the adaptive attack,
    at each L-inf budget of the evaluation (the adaptive attacks of all budgets as one group)."""
    from egide.lab.guard.evaluation import evaluate_guard

    made: dict[float, dict[str, np.ndarray]] = {}
    for (attack, eps), res in adversarials.items():
        if eps is not None and res.config.get("params", {}).get("norm", "inf") == "inf":
            made.setdefault(eps, {})[attack] = res.x_adv
    group = counter.group()
    result = evaluate_guard(clf, det, x, y, config.eps, steps=config.guard_attack_steps, seed=config.seed,
                            batch_size=config.batch_size, non_adaptive=made, registry=reg,
                            executor=executor,
                            progress=lambda done, total: group(done, total, f"{det.name} attacked adaptively"))
    counter.finished(len(x) * len(config.eps))
    return result


def _unsupervised(cls, spec, reg, clf, x, positives, fit_x, detection_eps, counter):
    det = reg.create("detector", cls.name, **spec.params)
    counter.progress_label(f"fit {cls.name} on {len(fit_x)} clean images")
    started = time.perf_counter()
    det.fit(clf, fit_x)
    fit_seconds = time.perf_counter() - started
    clean_scores, rate = _timed_scores(det, clf, x)
    runs = [_run(det, clf, clean_scores, adv, attack, eps, None)
            for (attack, eps), adv in positives.items()]
    return DetectorReport(
        config=det.config(), title=cls.title, supervised=False, fit_images=len(fit_x),
        fit_seconds=fit_seconds, score_rate=rate, runs=[r for r in runs if r],
        transfer={}, detection_eps=detection_eps,
    ), det


def _supervised(cls, spec, reg, clf, x, positives, attacks, fit_x, fit_clean_ok, fit_examples,
                detection_eps, counter):
    runs, transfer, fit_times, rates, skipped = [], {}, [], [], []
    fitted: dict[str, object] = {}  # attack fitted on -> the fitted detector
    for attack_cls, _ in attacks:
        fit_adv = fit_examples[attack_cls.name]
        if len(fit_adv) < 8:
            skipped.append(f"{attack_cls.name} ({len(fit_adv)} successful adversarial examples)")
            continue
        det = reg.create("detector", cls.name, **spec.params)
        counter.progress_label(f"fit {cls.name} on {attack_cls.name}")
        started = time.perf_counter()
        det.fit(clf, fit_x[fit_clean_ok], fit_adv)
        fit_times.append(time.perf_counter() - started)
        fitted[attack_cls.name] = det
        clean_scores, rate = _timed_scores(det, clf, x)
        rates.append(rate)
        row = {}
        for (attack, eps), adv in positives.items():
            run = _run(det, clf, clean_scores, adv, attack, eps, attack_cls.name)
            if run is None:
                continue
            if attack == attack_cls.name:  # the main table: fitted on the attack it is tested on
                runs.append(run)
            if eps is None or math.isclose(eps, detection_eps):
                row[attack] = run.auc
        transfer[attack_cls.name] = row
    note = None
    if skipped:
        note = "Not fitted on " + ", ".join(skipped) + ": too few to learn from."
    return DetectorReport(
        config=reg.create("detector", cls.name, **spec.params).config(), title=cls.title,
        supervised=True, fit_images=int(fit_clean_ok.sum()),
        fit_seconds=float(np.mean(fit_times)) if fit_times else 0.0,
        score_rate=float(np.mean(rates)) if rates else 0.0, runs=runs, transfer=transfer,
        detection_eps=detection_eps, note=note,
    ), fitted.get(reference_attack(reg), next(iter(fitted.values()), None))


def _timed_scores(det, clf, x):
    started = time.perf_counter()
    scores = det.score(clf, x)
    return scores, len(x) / max(time.perf_counter() - started, 1e-9)


def _run(det, clf, clean_scores, adv, attack, eps, fitted_on) -> DetectionRun | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(adv) == 0:
        return None  # the attack fooled no image: nothing to detect
    adv_scores = det.score(clf, adv)
    labels = np.r_[np.zeros(len(clean_scores)), np.ones(len(adv_scores))]
    scores = np.r_[clean_scores, adv_scores]
    if not np.all(np.isfinite(scores)):
        raise InputError(f"detector {det.name} returned NaN or Inf scores")
    fpr, tpr, _ = roc_curve(labels, scores)
    return DetectionRun(
        attack=attack,
        eps=eps,
        fitted_on=fitted_on,
        auc=float(roc_auc_score(labels, scores)),
        tpr_at_fpr=float(tpr[fpr <= TARGET_FPR].max()),
        detection_rate=float((adv_scores > det.threshold).mean()),
        false_positive_rate=float((clean_scores > det.threshold).mean()),
        threshold=float(det.threshold),
        positives=len(adv),
        roc=_thin(fpr, tpr),
    )


def _thin(fpr: np.ndarray, tpr: np.ndarray) -> list[list[float]]:
    """At most ROC_POINTS points of the curve, always keeping both ends."""
    if len(fpr) > ROC_POINTS:
        keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, ROC_POINTS).round().astype(int)])
        fpr, tpr = fpr[keep], tpr[keep]
    return [[round(float(a), 5), round(float(b), 5)] for a, b in zip(fpr, tpr)]
