"""BIM — Basic Iterative Method (Kurakin, Goodfellow & Bengio, ICLR 2017 workshop).

FGSM applied `steps` times with a small step, starting from the clean image (no random start):
x_{t+1} = Clip_range( Clip_{x, eps}( x_t + step_size * sign(grad) ) ), an L-inf attack.
Targeted mode (the paper's "iterative least-likely class" generalised to any target) descends
the loss of the target class instead.

The default step size, 1.25 * eps / steps, is the paper's schedule: with eps = 8/255 and
10 steps it is 1/255 per step, and the steps add up to 1.25 * eps so the ball's edge is reached.

Cost: `steps` forward+backward passes, in one compiled tf.function per classifier.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl
from egide.core.params import BUDGET_UI, Budget
from egide.core.gradients import cross_entropy_pass
from egide.core.norms import projected_gradient_step


class BIM(Attack):
    """Iterated FGSM steps from the clean image, clipped to the L-inf eps-ball every step."""

    name = "bim"
    title = "Basic Iterative Method"
    iterative = True
    full_strength = {"steps": 50}
    evaluation = {"steps": 10}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = Field(
            8 / 255, gt=0, le=1, json_schema_extra=BUDGET_UI,
            description="L-inf budget, in input units (8/255 ≈ 0.031)"
        )
        step_size: Budget | None = Field(
            None, json_schema_extra=BUDGET_UI,
            gt=0,
            le=1,
            description="Size of each step, in input units; empty (None) means 1.25 * eps / steps "
            "(Kurakin et al.: 1/255 for eps = 8/255 and 10 steps)",
        )
        steps: int = Field(10, ge=1, le=100_000, description="Number of gradient steps")
        targeted: bool = Field(
            False, description="Aim at given target labels instead of away from the true ones"
        )

    @property
    def step_size(self) -> float:
        """The step size used: the parameter, or 1.25 * eps / steps when it is not set."""
        p = self.params
        return p.step_size if p.step_size is not None else 1.25 * p.eps / p.steps

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf))
        return attack(x, labels)

    def _attack_function(self, clf):
        eps, steps, targeted = self.params.eps, self.params.steps, self.params.targeted
        alpha = self.step_size
        lo, hi = clf.clip

        model_pass = cross_entropy_pass(clf, targeted)

        def attack(x0, labels):
            def step(t, x):
                _, grad = model_pass(x, labels)
                return t + 1, projected_gradient_step(x, x0, grad, alpha, eps, "inf", lo, hi)

            _, x = tf.while_loop(lambda t, x: t < steps, step, (tf.constant(0), x0))
            return x

        return attack


@hookimpl
def egide_register_attacks(register):
    register(BIM)
