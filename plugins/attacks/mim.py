"""MIM — Momentum Iterative Method (Dong, Liao, Pang, Su, Zhu, Hu & Li, CVPR 2018).

BIM with a velocity: each step's gradient is normalised by its L1 norm per sample and
accumulated, g <- decay * g + grad / ||grad||_1, and the image moves along sign(g) (L-inf) or
g / ||g||_2 (L2), then is projected onto the eps-ball and clipped into the classifier's range.
It starts from the clean image. With decay = 0 it is BIM. Targeted mode descends the loss of the
target class instead.

The default step size, eps / steps, is the paper's: the steps add up to exactly eps.

Cost: `steps` forward+backward passes, in one compiled tf.function per classifier.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl
from egide.core.gradients import cross_entropy_pass
from egide.core.norms import per_sample_l1, projected_gradient_step
from egide.core.params import BUDGET_UI, Budget, Norm


_TINY = 1e-12


class MIM(Attack):
    """Iterated gradient steps with momentum over L1-normalised gradients."""

    name = "mim"
    title = "Momentum Iterative Method"
    iterative = True
    full_strength = {"steps": 50}
    evaluation = {"steps": 10}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = Field(
            8 / 255, gt=0, le=1e3, json_schema_extra=BUDGET_UI,
            description="Perturbation budget, in input units (8/255 ≈ 0.031)"
        )
        norm: Norm = Field("inf", description="Norm of the budget: L-inf or L2")
        step_size: Budget | None = Field(
            None, json_schema_extra=BUDGET_UI,
            gt=0,
            le=1e3,
            description="Size of each step, in input units; empty (None) means eps / steps",
        )
        steps: int = Field(10, ge=1, le=100_000, description="Number of gradient steps")
        decay: float = Field(
            1.0,
            ge=0,
            le=100,
            description="Momentum decay factor μ (1.0 in the paper; 0 gives BIM)",
        )
        targeted: bool = Field(
            False, description="Aim at given target labels instead of away from the true ones"
        )

    @property
    def step_size(self) -> float:
        """The step size used: the parameter, or eps / steps when it is not set."""
        p = self.params
        return p.step_size if p.step_size is not None else p.eps / p.steps

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf))
        return attack(x, labels)

    def _attack_function(self, clf):
        p = self.params
        eps, norm, steps, decay, targeted = p.eps, p.norm, p.steps, p.decay, p.targeted
        alpha = self.step_size
        lo, hi = clf.clip

        model_pass = cross_entropy_pass(clf, targeted)

        def attack(x0, labels):
            def step(t, x, velocity):
                _, grad = model_pass(x, labels)
                velocity = decay * velocity + grad / tf.maximum(per_sample_l1(grad), _TINY)
                moved = projected_gradient_step(x, x0, velocity, alpha, eps, norm, lo, hi)
                return t + 1, moved, velocity

            _, x, _ = tf.while_loop(
                lambda t, x, v: t < steps, step, (tf.constant(0), x0, tf.zeros_like(x0))
            )
            return x

        return attack


@hookimpl
def egide_register_attacks(register):
    register(MIM)
