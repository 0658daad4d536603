"""One attack at one budget, run and measured: the step the pipeline repeats (and the defense
evaluation, on a defense's two views), and the progress counter over the whole evaluation."""

from __future__ import annotations

from typing import Callable

import numpy as np

from egide.core.classifier import Classifier
from egide.lab import services
from egide.lab.report.model import AttackRun, eps_key

# (done, total, label): images processed over the whole evaluation, and what runs now.
EvaluationProgress = Callable[[int, int, str], None]


class Counter:
    """Progress over the whole evaluation: images processed by every run so far."""

    def __init__(self, total: int, progress: EvaluationProgress | None):
        self.total, self.done, self.progress = total, 0, progress

    def step(self, label: str):
        base = self.done

        def report(n_done, n_total):
            if self.progress:
                self.progress(base + n_done, self.total, label)

        return report

    def finished(self, n: int) -> None:
        self.done += n

    def progress_label(self, label: str) -> None:
        """Say what runs now, without advancing (work that is not counted in images)."""
        if self.progress:
            self.progress(self.done, self.total, label)


def run_attack(cls, spec, eps, attacked: Classifier, measured: Classifier, x, y, clean_ok, names,
               config, counter: Counter, purpose: str = "evaluation", label_suffix: str = "",
               executor=None):
    """Run one attack at one budget on `attacked`; robust accuracy is measured on `measured`
    (the same classifier, or the real defense when `attacked` is its adaptive view). With an
    executor (Ray), the undefended model's batches run as its tasks."""
    params = dict(spec.params) if eps is None else {**spec.params, "eps": eps}
    attack = cls(**params)
    label = (cls.name if eps is None else f"{cls.name} eps={eps_key(eps)}") + label_suffix
    if purpose == "sanity":
        label += " (unbounded sanity check)"
    # Measured on the real defended classifier: an adaptive view's own predictions (BPDA's
    # stand-in, EOT's average) are how the attacker sees it, not what the defense answers.
    if executor is not None and attacked is measured:
        result = executor.attack_on(attack, attacked, x, y, batch_size=config.batch_size,
                                    seed=config.seed, progress=counter.step(label))
    else:
        result = services.attack_on(attack, measured, attacked, x, y, batch_size=config.batch_size,
                                    seed=config.seed, progress=counter.step(label))
    counter.finished(len(x))
    robust = (result.y_pred_adv == y) & clean_ok
    run = AttackRun(
        attack=cls.name,
        eps=eps,
        params=attack.params.model_dump(mode="json"),
        version=cls.version,
        robust_accuracy=float(robust.mean()),
        success_rate=float(result.success.mean()),
        l2_mean=float(result.l2.mean()),
        linf_max=float(result.linf.max()),
        seconds=result.seconds,
        per_class=per_class(robust, y, names),
        robust=robust,
        l2=result.l2,
        size=result.l2 if attack.norm == "2" else result.linf,
        norm=attack.norm,
        purpose=purpose,
    )
    return run, result


def per_class(ok: np.ndarray, y: np.ndarray, names: list[str]) -> dict[str, float]:
    return {n: float(ok[y == i].mean()) if (y == i).any() else float("nan") for i, n in enumerate(names)}
