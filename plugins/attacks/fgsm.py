"""FGSM — Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, ICLR 2015).

One step of size eps along the steepest-ascent direction of the cross-entropy loss:
x' = clip(x + eps * sign(grad)) for L-inf, x' = clip(x + eps * grad / ||grad||_2) for L2.
Targeted mode descends the loss of the target class instead.
"""

import tensorflow as tf
from pydantic import BaseModel

from egide.core import Attack, hookimpl
from egide.core.gradients import cross_entropy_pass
from egide.core.norms import steepest_direction
from egide.core.params import Budget, Norm
from egide.plugins.attacks._params import eps_field, norm_field, targeted_field


class FGSM(Attack):
    """Single-step attack along the loss gradient's sign (L-inf) or direction (L2)."""

    name = "fgsm"
    title = "Fast Gradient Sign Method"
    single_step = True
    evaluation = {}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field()
        norm: Norm = norm_field()
        targeted: bool = targeted_field()

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        step = self.compiled(clf, lambda: self._step_function(clf))
        return step(x, labels)

    def _step_function(self, clf):
        eps, norm, sign = self.params.eps, self.params.norm, -1.0 if self.targeted else 1.0
        lo, hi = clf.clip

        model_pass = cross_entropy_pass(clf, targeted=False)

        def step(x, labels):
            _, grad = model_pass(x, labels)
            return tf.clip_by_value(x + sign * eps * steepest_direction(grad, norm), lo, hi)

        return step


@hookimpl
def egide_register_attacks(register):
    register(FGSM)
