"""Evaluating preprocessing defenses honestly: every attack twice, non-adaptive and adaptive.

Non-adaptive: the attack differentiates the defended classifier as it is — a quantiser or a JPEG
round trip hands it a zero gradient, a random transform one draw's gradient. Adaptive: the
attack differentiates the defense's adaptive view (BPDA for a non-differentiable transform, EOT
over draws for a randomized one; see core/preprocess.py). Either way, robust accuracy is what
the real defended classifier answers on the adversarial images. The two numbers side by side
show when a defense only hides gradients; no robustness number is reported without its
adaptive counterpart.
"""

from __future__ import annotations

import math

import numpy as np

from egide.core.errors import ParameterError
from egide.core.preprocess import PreprocessedClassifier, Preprocessor
from egide.lab.evaluation.running import LocalExecutor, attack_run, plan_attack, run_jobs
from egide.lab.evaluation.suite import run_suite
from egide.lab.report.model import DefenseReport, DefenseRun, eps_key

MASKING_GAP = 0.10  # non-adaptive above adaptive by more than this: the defense masks gradients


def defense_classifier(reg, spec, clf) -> PreprocessedClassifier:
    """Create the defense of `spec` and wrap `clf` with it; trainers are refused with the way out."""
    cls = reg.get("defense", spec.plugin)
    if cls.needs_training_data or not issubclass(cls, Preprocessor):
        raise ParameterError(
            f"defense '{spec.plugin}' trains a new model: run `egide defend --defense "
            f"{spec.plugin} ... --out defended.keras`, then evaluate that model with --model"
        )
    return reg.create("defense", spec.plugin, **spec.params).apply(clf)


def evaluate_defense(defended: PreprocessedClassifier, plan, x, y, names, config,
                     counter, registry=None, executor=None) -> DefenseReport:
    """Clean accuracy of the defended classifier, then each planned attack both ways (one group
    of jobs: on Ray, all at once), and the reference suite, when the evaluation has one, on the
    adaptive view."""
    executor = executor or LocalExecutor()
    defense = defended.defense
    defended.reseed(config.seed)
    clean_ok = defended.predict(x, batch_size=config.batch_size) == y
    adaptive = defended.adaptive(eot_samples=config.eot_samples)
    tag = f" vs {defense.name}"
    jobs = []
    for cls, spec, eps, _ in plan:
        jobs.append(plan_attack(cls, spec, eps, defended, defended, x, y, label_suffix=tag))
        jobs.append(plan_attack(cls, spec, eps, defended, adaptive, x, y, label_suffix=tag + " (adaptive)"))
    results = run_jobs(executor, jobs, config, counter)
    runs, robust_by = [], {}
    for i in range(0, len(jobs), 2):
        plain = attack_run(jobs[i], results[i], clean_ok, names)
        strong = attack_run(jobs[i + 1], results[i + 1], clean_ok, names)
        runs.append(DefenseRun(plain.attack, plain.eps, plain.robust_accuracy, strong.robust_accuracy,
                               plain.success_rate, strong.success_rate,
                               plain.seconds + strong.seconds))
        robust_by[(plain.attack, plain.eps, plain.norm)] = (
            plain.robust, strong.robust)

    if config.suite:
        suite = run_suite(registry, config.suite, defended, adaptive, x, y, clean_ok, config.eps,
                          config.norm, config, counter, executor)
        for r in suite.runs:
            # The suite is adaptive only: the non-adaptive column is left as the plan made it.
            robust_by[(f"suite:{suite.ran}", r.eps, config.norm)] = (np.ones_like(r.robust), r.robust)
    worst = {}
    for eps in config.eps:
        at_eps = [v for (name, e, norm), v in robust_by.items()
                  if e is not None and math.isclose(e, eps) and norm == config.norm]
        if at_eps:
            worst[eps_key(eps)] = {
                "non_adaptive": float(np.logical_and.reduce([p for p, _ in at_eps]).mean()),
                "adaptive": float(np.logical_and.reduce([a for _, a in at_eps]).mean()),
            }
    gaps = [(r.non_adaptive - r.adaptive, r) for r in runs]
    gap, worst_run = max(gaps, key=lambda g: g[0]) if gaps else (0.0, None)
    masking = None
    if worst_run is not None and gap > MASKING_GAP:
        at = "" if worst_run.eps is None else f" at ε={eps_key(worst_run.eps)}"
        masking = (
            f"{worst_run.attack}{at}: {worst_run.non_adaptive:.1%} non-adaptive but "
            f"{worst_run.adaptive:.1%} adaptive. The non-adaptive number only measures how well "
            f"{defense.name} hides its gradient; the adaptive one is the robustness."
        )
    view = "EOT" if defense.randomized else ("exact gradient" if defense.differentiable else "BPDA")
    if defense.randomized and not defense.differentiable:
        view = "BPDA + EOT"
    return DefenseReport(
        config=defense.config(),
        title=defense.title,
        view=view,
        clean_accuracy=float(clean_ok.mean()),
        runs=runs,
        worst_case=worst,
        masking=masking,
    )
