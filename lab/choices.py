"""Plugins the lab picks for a role, chosen by what they declare, never by their names.

- `reference_attack`: the attack that makes a supervised detector's adversarial examples, the
  guard evaluation's non-adaptive examples when an evaluation gave none, and the example whose
  fit a supervised detector is attacked in: an iterative attack with a fixed budget, preferring
  one with a random start (PGD, the usual choice in the detection literature).
- `surrogate_detector`: the detector whose gradient stands in for one that declares none: an
  unsupervised detector with a declared gradient that reads only the model's outputs
  (`reads_only_outputs`: it works on any classifier, whatever its layers), the exact gradient
  first.
"""

from __future__ import annotations

from egide.core.errors import InputError


def reference_attack(registry) -> str:
    candidates = [cls for cls in registry.plugins("attack") if cls.iterative and cls.budget == "fixed"]
    if not candidates:
        raise InputError("no iterative attack with a fixed budget is installed (pgd, for one): "
                         "it is needed to make adversarial examples for the detectors")
    random_start = [cls for cls in candidates if "random_start" in cls.Params.model_fields]
    return (random_start or candidates)[0].name


def surrogate_detector(registry) -> str:
    candidates = [cls for cls in registry.plugins("detector")
                  if not cls.supervised and cls.score_gradient is not None
                  and getattr(cls, "reads_only_outputs", False)]
    if not candidates:
        raise InputError("a detector without a gradient is attacked through a surrogate: an unsupervised "
                         "detector with a gradient that reads only the model's outputs (feature-squeezing, "
                         "for one); none is installed")
    exact = [cls for cls in candidates if cls.score_gradient == "exact"]
    return (exact or candidates)[0].name


def norms_of(cls) -> tuple[str, ...]:
    """The budget norms an attack takes, read from its `norm` parameter's type ("inf" alone when
    it has none): what an evaluation under a threat model may run it at."""
    from typing import get_args

    field = cls.Params.model_fields.get("norm")
    return tuple(str(v) for v in get_args(field.annotation)) if field is not None else ("inf",)
