"""One attack at one budget, planned, run and measured: the step the pipeline repeats (and the
defense evaluation, on a defense's two views, and the suite, stage by stage), and the progress
counter over the whole evaluation.

Runs are planned as `AttackJob`s and handed to an executor in groups: `LocalExecutor` runs them
here one after another; `RayExecutor` (ray_executor.py) runs every batch of every job of a group
as a Ray task at once. A job's result depends only on its images, the seed and the batch size,
never on where or alongside what it ran, so both give the same per-image numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from egide.core.attack import Attack
from egide.core.classifier import Classifier
from egide.core.results import AttackResult
from egide.lab import services
from egide.lab.report.model import AttackRun, eps_key

# (done, total, label): images processed over the whole evaluation, and what runs now.
EvaluationProgress = Callable[[int, int, str], None]


class Counter:
    """Progress over the whole evaluation: images processed by every run so far."""

    def __init__(self, total: int, progress: EvaluationProgress | None):
        self.total, self.done, self.progress = total, 0, progress
        self.label = ""

    def group(self):
        """Progress of a group of runs, (done, total, label) over the group's images."""
        base = self.done

        def report(n_done, n_total, label):
            self.label = label
            if self.progress:
                self.progress(base + n_done, self.total, label)

        return report

    def finished(self, n: int) -> None:
        """n more images done (or skipped: a suite stage only attacks what is still robust);
        said at once, so the last report of a run is its own total."""
        self.done += n
        if self.progress and n:
            self.progress(self.done, self.total, self.label)

    def progress_label(self, label: str) -> None:
        """Say what runs now, without advancing (work that is not counted in images)."""
        if self.progress:
            self.progress(self.done, self.total, label)


@dataclasses.dataclass
class AttackJob:
    """`attack` on `attacked` (the real classifier or a defense's adaptive view of it), its
    result measured on `real`; `eps` and `purpose` say what the report files it under."""

    attack: Attack
    real: Classifier
    attacked: Classifier
    x: np.ndarray
    y: np.ndarray
    label: str
    eps: float | None = None
    purpose: str = "evaluation"
    target: np.ndarray | None = None


def plan_attack(cls, spec, eps, real: Classifier, attacked: Classifier, x, y,
                purpose: str = "evaluation", label_suffix: str = "") -> AttackJob:
    """The job of one attack plugin at one budget (None: a minimal-perturbation attack)."""
    params = dict(spec.params) if eps is None else {**spec.params, "eps": eps}
    label = (cls.name if eps is None else f"{cls.name} eps={eps_key(eps)}") + label_suffix
    if purpose == "sanity":
        label += " (unbounded sanity check)"
    return AttackJob(cls(**params), real, attacked, x, y, label, eps, purpose)


class LocalExecutor:
    """Runs a group of jobs here, one after another."""

    def run_all(self, jobs: list[AttackJob], *, batch_size: int | None, seed: int,
                progress=None) -> list[AttackResult]:
        results, done = [], 0
        total = sum(len(job.x) for job in jobs)
        for job in jobs:
            def report(n_done, n_total, base=done, label=job.label):
                progress(base + n_done, total, label)

            # Measured on the real defended classifier: an adaptive view's own predictions
            # (BPDA's stand-in, EOT's average) are how the attacker sees it, not what it answers.
            results.append(services.attack_on(job.attack, job.real, job.attacked, job.x, job.y,
                                              target=job.target, batch_size=batch_size, seed=seed,
                                              progress=report if progress else None))
            done += len(job.x)
        return results

    def run_guard_attacks(self, attacks, clf, det, surrogate, x, y, *, batch_size: int | None,
                          seed: int, progress=None) -> list:
        """Detector-aware attacks (lab/guard/attack.py) on the guard (clf, det), one after another."""
        results = []
        for i, attack in enumerate(attacks):
            def report(n_done, n_total, base=i * len(x), label=f"guard attack eps={eps_key(attack.params.eps)}"):
                progress(base + n_done, len(attacks) * len(x), label)

            results.append(attack.run(clf, det, x, y, seed=seed, batch_size=batch_size,
                                      surrogate=surrogate, progress=report if progress else None))
        return results


def run_jobs(executor, jobs: list[AttackJob], config, counter: Counter) -> list[AttackResult]:
    """Run a group of jobs on `executor`, counting their images into the evaluation's progress."""
    results = executor.run_all(jobs, batch_size=config.batch_size, seed=config.seed,
                               progress=counter.group())
    counter.finished(sum(len(job.x) for job in jobs))
    return results


def attack_run(job: AttackJob, result: AttackResult, clean_ok, names) -> AttackRun:
    """What the report keeps of one job: robust accuracy overall and per class, sizes, time."""
    y = job.y
    robust = (result.y_pred_adv == y) & clean_ok
    return AttackRun(
        attack=job.attack.name,
        eps=job.eps,
        params=job.attack.params.model_dump(mode="json"),
        version=job.attack.version,
        robust_accuracy=float(robust.mean()),
        success_rate=result.success_rate,  # of the images classified right before the attack
        l2_mean=float(result.l2.mean()),
        linf_max=float(result.linf.max()),
        seconds=result.seconds,
        per_class=per_class(robust, y, names),
        robust=robust,
        l2=result.l2,
        size=result.l2 if job.attack.norm == "2" else result.linf,
        norm=job.attack.norm,
        purpose=job.purpose,
        adv_pred=result.y_pred_adv,
    )


def per_class(ok: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, float]:
    return {n: float(ok[y == i].mean()) if (y == i).any() else float("nan") for i, n in enumerate(names)}
