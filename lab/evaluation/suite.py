"""Reference-grade evaluation: the AutoAttack protocols (Croce & Hein 2020), run natively.

    standard  APGD-CE, APGD-T (targeted DLR, 9 targets), FAB-T (9 targets), Square (5,000 queries)
    fast      APGD-CE, APGD-T on the 3 targets MALT's linear estimate puts nearest (a second start
              only on the points the first brought within 0.1 DLR of the boundary), Square (1,000
              queries)
    quick     APGD-CE, APGD-T
    plus      APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T, FAB-T
    rand      APGD-CE and APGD-DLR with EOT over 20 draws, for randomized models

Under L2 the members are the same; under L1 (AutoAttack's L1 standard) APGD-CE makes 5 restarts
(8 in `fast`) and APGD-T aims at 5 targets, both with the 3-2-1 eps schedule of l1-APGD, and a
member whose attack has no L1 version is left out and named.

Each member runs only on the points every earlier member left robust, from the clean image; a
point broken once stays broken; robust accuracy is the per-point worst case over the ensemble.
Before the first attack the model is called twice on the same images: if its outputs differ it
is randomized, and the `rand` protocol runs instead (the report says so). A member whose loss
needs more classes than the model has is replaced by the variant that applies (targeted DLR
needs 4, DLR 3), or left out, and the report says which ran. A member whose plugin is not
installed is left out and named. When the black-box member (Square) breaks points the
white-box members missed, their gradients were misleading: the report flags gradient masking.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from egide.core.classifier import Classifier
from egide.lab.evaluation.running import AttackJob, LocalExecutor, run_jobs
from egide.lab.report.model import SuiteMember, SuiteReport, SuiteRun, eps_key

SQUARE_FLAG = 0.002  # Square lowering robust accuracy by more than this flags masking (as the reference)
RANDOMIZED_TOLERANCE = 1e-4  # largest difference of two identical calls of a deterministic model


@dataclasses.dataclass(frozen=True)
class Member:
    """One attack of a protocol: a label, a plugin and its parameters (eps comes per budget)."""

    label: str
    plugin: str
    params: dict
    min_classes: int = 2
    fallback: str | None = None  # the member that runs instead when classes are too few
    black_box: bool = False


_APGD_CE = Member("apgd-ce", "apgd", {"loss": "ce", "steps": 100, "restarts": 1})
_APGD_DLR = Member("apgd-dlr", "apgd", {"loss": "dlr", "steps": 100, "restarts": 1}, min_classes=3)
_APGD_T = Member("apgd-t", "apgd", {"loss": "dlr-targeted", "steps": 100, "restarts": 1, "target_classes": 9},
                 min_classes=4, fallback="apgd-dlr")
_FAB_T = Member("fab-t", "fab", {"target_classes": 9, "steps": 100, "restarts": 1})
_FAB = Member("fab", "fab", {"steps": 100, "restarts": 5})
_SQUARE = Member("square", "square", {"queries": 5000, "p_init": 0.8, "rescale_schedule": False},
                 black_box=True)

# fast: MALT's targeting (Melamed et al. 2024) lets APGD-T aim at 3 classes instead of 9, and
# makes a second random start for each target on the points its first one left robust but
# brought within 0.1 DLR of the boundary: points near a boundary fall to one start and not
# another, and those a second start broke were all within 0.035 on the models measured, while
# farther points never fell to 6 more starts (docs/decisions.md; 4 starts near the boundary
# bought odds, not rows, for up to 24% more time); FAB-T, which adds nothing where APGD-T ran
# (AutoAttack's own ablations, and the demo), is left out; Square stays as the gradient-free
# check against masking, with 1,000 queries.
SECOND_START_WITHIN = 0.1
_APGD_T_MALT = Member("apgd-t-malt", "apgd", {"loss": "dlr-targeted", "steps": 100, "restarts": 2,
                                              "restart_within": SECOND_START_WITHIN,
                                              "target_classes": 3, "target_order": "linear"},
                      min_classes=4, fallback="apgd-dlr")
_SQUARE_CHECK = Member("square-1k", "square", {"queries": 1000, "p_init": 0.8, "rescale_schedule": False},
                       black_box=True)

PROTOCOLS: dict[str, list[Member]] = {
    "standard": [_APGD_CE, _APGD_T, _FAB_T, _SQUARE],
    "fast": [_APGD_CE, _APGD_T_MALT, _SQUARE_CHECK],
    "quick": [_APGD_CE, _APGD_T],
    "plus": [
        dataclasses.replace(_APGD_CE, params={**_APGD_CE.params, "restarts": 5}),
        dataclasses.replace(_APGD_DLR, params={**_APGD_DLR.params, "restarts": 5}),
        _FAB, _SQUARE, _APGD_T, _FAB_T,
    ],
    "rand": [
        dataclasses.replace(_APGD_CE, params={**_APGD_CE.params, "eot_samples": 20}),
        dataclasses.replace(_APGD_DLR, params={**_APGD_DLR.params, "eot_samples": 20}),
    ],
}
VARIANTS = {m.label: m for m in (_APGD_CE, _APGD_DLR, _APGD_T, _APGD_T_MALT, _FAB_T, _FAB, _SQUARE,
                                 _SQUARE_CHECK)}
# AutoAttack's L1 standard: APGD with the 3-2-1 eps schedule, 5 restarts for APGD-CE and 5 target
# classes for APGD-T (Croce & Hein 2021); the other members as for L-inf and L2.
L1_PARAMS = {"apgd-ce": {"restarts": 5, "eps_schedule": True},
             "apgd-t": {"target_classes": 5, "eps_schedule": True},
             "apgd-t-malt": {"eps_schedule": True},
             "apgd-dlr": {"eps_schedule": True}}
# fast under L1: APGD-CE makes 8 restarts, 3 more than the reference. l1-APGD's runs differ much
# more from one random start to the next than at L-inf and L2, and the points later starts break
# are not only those a run brought near the boundary (some sat at DLR -0.8), so the extra starts
# cannot be aimed as APGD-T's second start is; on four model/budget pairs, restarts 6 to 8 broke
# 5 more points, for about 16% more time, and with l1-APGD's start fixed (session 16) 5 restarts
# still left `fast` one image behind the reference at adversarial L1 2 (docs/decisions.md). Each
# restart runs only on the points still robust, and restarts 1 to 5 draw as with 5. Its l1-APGD
# runs (APGD-CE's and APGD-T's) skip the last stage for the points the 2 eps stage did not break:
# over 56 starts on five model/budget pairs, no such point was broken within eps by the full run
# (`stage_discard`, Adaptive Auto Attack's discarding; docs/decisions.md).
FAST_L1_PARAMS = {"apgd-ce": {"restarts": 8, "stage_discard": True}, "apgd-t-malt": {"stage_discard": True},
                  "apgd-dlr": {"stage_discard": True}}


def is_randomized(clf: Classifier, x: np.ndarray, batch_size: int) -> bool:
    """Whether two calls on the same images give different outputs (a randomized model)."""
    sample = x[: min(len(x), 64)]
    first = clf.predict_logits(sample, batch_size=batch_size)
    second = clf.predict_logits(sample, batch_size=batch_size)
    return bool(np.abs(first - second).max() > RANDOMIZED_TOLERANCE)


def plan(registry, protocol: str, num_classes: int, randomized: bool,
         norm: str = "inf") -> tuple[str, list[SuiteMember]]:
    """The protocol that runs and each member's fate: runs, replaced, or left out, and why."""
    from egide.lab.choices import norms_of

    ran = "rand" if randomized and protocol != "rand" else protocol
    members = []
    for m in PROTOCOLS[ran]:
        chosen, note = m, None
        while chosen is not None and num_classes < chosen.min_classes:
            replacement = VARIANTS.get(chosen.fallback) if chosen.fallback else None
            note = (f"{chosen.label} needs {chosen.min_classes} classes and the model has {num_classes}"
                    + (f": {replacement.label} runs instead" if replacement else ": left out"))
            chosen = replacement
        if chosen is not None and norm == "1" and chosen.label in L1_PARAMS:  # a fallback's too
            fast_only = FAST_L1_PARAMS.get(chosen.label, {}) if ran == "fast" else {}
            chosen = dataclasses.replace(chosen, params={**chosen.params, **L1_PARAMS[chosen.label], **fast_only})
        if chosen is not None and chosen.plugin not in registry.names("attack"):
            note = f"{chosen.label}: the '{chosen.plugin}' attack is not installed, so it was left out"
            chosen = None
        elif chosen is not None and norm not in norms_of(registry.get("attack", chosen.plugin)):
            note = (f"{chosen.label}: the '{chosen.plugin}' attack has no L{'∞' if norm == 'inf' else norm} "
                    "version yet, so it was left out (the suite is weaker than the reference here)")
            chosen = None
        members.append(SuiteMember(
            label=m.label, ran=chosen.label if chosen else None,
            plugin=chosen.plugin if chosen else m.plugin,
            params=dict(chosen.params) if chosen else dict(m.params),
            black_box=m.black_box, note=note))
    return ran, members


def run_suite(registry, protocol: str, real: Classifier, attacked: Classifier, x, y, clean_ok,
              eps_list, norm: str, config, counter, executor=None) -> SuiteReport:
    """The protocol at every budget: per point, the first member that broke it. Each member is
    one group of jobs over every budget (on Ray, all at once); the next member starts on the
    points left robust."""
    executor = executor or LocalExecutor()
    randomized = is_randomized(attacked, x, config.batch_size)
    ran, members = plan(registry, protocol, real.num_classes, randomized, norm)
    robust = [clean_ok.copy() for _ in eps_list]
    broken_by = [np.full(len(y), "", dtype=object) for _ in eps_list]
    adv_pred = [np.asarray(y).copy() for _ in eps_list]  # a point's class once broken
    after = [[] for _ in eps_list]
    seconds = [[0.0] * len(members) for _ in eps_list]
    for k, m in enumerate(members):
        jobs, todos = [], []
        for e, eps in enumerate(eps_list):
            todo = np.flatnonzero(robust[e])
            if m.ran is not None and len(todo):
                attack = registry.create("attack", m.plugin, **{**m.params, "eps": eps, "norm": norm})
                jobs.append(AttackJob(attack, real, attacked, x[todo], y[todo],
                                      f"suite {m.ran} eps={eps_key(eps)}", eps, "suite"))
                todos.append((e, todo))
        results = run_jobs(executor, jobs, config, counter)
        counter.finished(len(x) * len(eps_list) - sum(len(t) for _, t in todos))  # skipped points
        for (e, todo), result in zip(todos, results):
            hit = result.y_pred_adv != y[todo]
            robust[e][todo[hit]] = False
            broken_by[e][todo[hit]] = m.ran
            adv_pred[e][todo[hit]] = result.y_pred_adv[hit]
            seconds[e][k] = result.seconds
        for e in range(len(eps_list)):
            after[e].append(float(robust[e].mean()))
    runs = [SuiteRun(eps=eps, robust_accuracy=float(robust[e].mean()), after=after[e],
                     seconds=seconds[e], robust=robust[e], broken_by=broken_by[e], adv_pred=adv_pred[e],
                     masking=_masking(members, after[e], clean_ok.mean()))
            for e, eps in enumerate(eps_list)]
    return SuiteReport(protocol=protocol, ran=ran, randomized=randomized, norm=norm,
                       members=members, runs=runs)


def _masking(members: list[SuiteMember], after: list[float], clean: float) -> str | None:
    """A sentence when a black-box member broke points the white-box ones before it missed."""
    for i, m in enumerate(members):
        if m.black_box and m.ran is not None:
            before = after[i - 1] if i else clean
            if before - after[i] > SQUARE_FLAG:
                return (f"{m.ran} (black-box, no gradients) lowered robust accuracy from "
                        f"{before:.1%} to {after[i]:.1%} after the gradient attacks: their gradients "
                        "were misleading here, a sign of gradient masking.")
    return None
