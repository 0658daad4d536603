"""The sanity checks of an evaluation: the signs of gradient masking (Carlini et al. 2019,
"On evaluating adversarial robustness", section 5; Athalye et al. 2018).

Each check has three states. It passes or fails only when the run holds what it compares; a
check whose comparison is not in the run (one ε only, no single-step attack) is "not
applicable", with the reason, and is never counted as passed.
"""

from __future__ import annotations

from egide.lab.report.model import SanityCheck, eps_key

UNBOUNDED_SUCCESS = 0.95  # an unbounded attack should break nearly every sample
MONOTONE_SLACK = 0.02  # robust accuracy may wobble this much before a flag is raised


def sanity_checks(runs, unbounded, eps_list, clean_accuracy, kinds) -> list[SanityCheck]:
    """The three checks on the evaluated runs (`runs`), the unbounded sanity runs, the budgets
    and the attacks' declared kinds ({"single_step": names, "iterative": names})."""
    by = {(r.attack, r.eps): r for r in runs}
    return [
        _iterative_vs_single_step(by, eps_list, kinds),
        _falls_with_eps(runs, by, eps_list, clean_accuracy),
        _unbounded_succeed(runs, unbounded, clean_accuracy),
    ]


def _iterative_vs_single_step(by, eps_list, kinds) -> SanityCheck:
    """An iterative attack weaker than one gradient step at the same budget follows a useless
    gradient: masked, obfuscated, or a step too small for its number of steps."""
    name = "iterative-at-least-as-strong-as-fgsm"
    pairs = [(it, single, eps) for it in sorted(kinds["iterative"]) for single in sorted(kinds["single_step"])
             for eps in eps_list if (it, eps) in by and (single, eps) in by]
    if not pairs:
        missing = ("no single-step attack (such as fgsm) in the run" if not kinds["single_step"]
                   else "no iterative attack (such as pgd) in the run" if not kinds["iterative"]
                   else "no budget at which both an iterative and a single-step attack ran")
        return SanityCheck(name, None, f"Not applicable: {missing}, so nothing to compare.")
    weaker = [
        f"{it} at {eps_key(eps)}: {by[(it, eps)].robust_accuracy:.1%} vs {single.upper()} "
        f"{by[(single, eps)].robust_accuracy:.1%}"
        for it, single, eps in pairs
        if by[(it, eps)].robust_accuracy > by[(single, eps)].robust_accuracy + MONOTONE_SLACK
    ]
    if not weaker:
        compared = sorted({it for it, _, _ in pairs})
        return SanityCheck(name, True, f"Iterative attacks ({', '.join(compared)}) are at least as strong "
                           f"as the single-step one at each of {len({e for *_, e in pairs})} ε compared.")
    return SanityCheck(
        name, False,
        "An iterative attack is weaker than a single-step one (" + "; ".join(weaker) + "). Many steps "
        "should never do worse than one: this is a classic sign of gradient masking, or of a step "
        "size too small for the number of steps.")


def _falls_with_eps(runs, by, eps_list, clean_accuracy) -> SanityCheck:
    """Robust accuracy must not rise as the budget grows, and must fall somewhere."""
    name = "accuracy-falls-as-eps-grows"
    series = {}
    for attack in sorted({r.attack for r in runs if r.eps is not None}):
        accs = [by[(attack, e)].robust_accuracy for e in eps_list if (attack, e) in by]
        if len(accs) > 1:
            series[attack] = accs
    if not series:
        why = ("one ε only" if len(eps_list) < 2 else "no attack with a fixed budget ran at two ε")
        return SanityCheck(name, None, f"Not applicable: {why}, so there is no trend to check; "
                           "give two or more budgets.")
    rising = [a for a, accs in series.items() if any(b > x + MONOTONE_SLACK for x, b in zip(accs, accs[1:]))]
    flat = [a for a, accs in series.items() if clean_accuracy > 0 and accs[-1] >= clean_accuracy - MONOTONE_SLACK]
    problems = []
    if rising:
        problems.append(f"robust accuracy rises with epsilon for {', '.join(rising)}")
    if flat:
        problems.append(f"accuracy does not fall at all as epsilon grows for {', '.join(flat)}")
    if not problems:
        return SanityCheck(name, True, f"Robust accuracy falls as epsilon grows, for each of the "
                           f"{len(series)} attack(s) run at {len(eps_list)} ε.")
    return SanityCheck(
        name, False,
        "; ".join(problems).capitalize() + ". A larger budget contains every smaller one, so a correct "
        "attack can only do better with it: suspect gradient masking or a failing attack.")


def _unbounded_succeed(runs, unbounded, clean_accuracy) -> SanityCheck:
    """Attacks without a real budget must break (almost) every correctly classified image."""
    name = "unbounded-attacks-succeed"
    candidates = unbounded + [r for r in runs if r.eps is None]
    if not candidates:
        return SanityCheck(name, None, "Not applicable: no iterative or minimal-perturbation attack in the "
                           "run, so no unbounded attack was made.")
    if clean_accuracy == 0:
        return SanityCheck(name, None, "Not applicable: the model classified no image correctly, so there "
                           "is nothing for an attack to break.")
    weak = [f"{r.attack}{' eps=1' if r.purpose == 'sanity' else ''} {r.success_rate:.1%}"
            for r in candidates if r.success_rate < UNBOUNDED_SUCCESS]
    if not weak:
        return SanityCheck(name, True, f"Unbounded attacks break at least {UNBOUNDED_SUCCESS:.0%} of the "
                           "correctly classified images.")
    return SanityCheck(
        name, False,
        f"An unbounded attack succeeds too rarely ({', '.join(weak)} of the correctly classified images). "
        "With no budget any input can be changed into any other, so this means gradients that do not "
        "lead anywhere (masking) or an attack that is stopped too early.")


def black_box_check(suite) -> SanityCheck:
    """The suite's own masking check: a gradient-free attack must not beat the gradient ones."""
    name = "black-box-not-stronger-than-white-box"
    if not any(m.black_box and m.ran for m in suite.members):
        return SanityCheck(name, None, f"Not applicable: the {suite.ran} suite ran no black-box attack, so "
                           "nothing checked the gradient attacks without gradients.")
    flagged = [f"at {eps_key(r.eps)}: {r.masking}" for r in suite.runs if r.masking]
    if not flagged:
        return SanityCheck(name, True, "The black-box attack of the suite broke no point the gradient "
                           "attacks had missed.")
    return SanityCheck(name, False, " ".join(flagged))
