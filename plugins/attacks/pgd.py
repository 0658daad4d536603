"""PGD — Projected Gradient Descent (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018).

From a random point of the eps-ball around x (`random_start`), take `steps` steps of size
`step_size` along the steepest-ascent direction of the cross-entropy loss — sign(grad) for
L-inf, grad / ||grad||_2 for L2 — and after every step project back onto the ball, then clip
into the classifier's range. Targeted mode descends the loss of the target class instead.

Restarts keep the worst case per sample: a sample is broken if any restart breaks it, and it
keeps the x_adv of the first restart that did; a sample no restart breaks keeps the restart
with the highest loss (lowest target loss when targeted).

Seeds: restart r of image i starts from draw r of (seed, i) (`egide.core.randomness`): the same
for any batch size, and restart 0 of an R-restart run is exactly the 1-restart run with the same
seed, so more restarts never break fewer samples.

Early stop: a sample that is misclassified (on target) at the start of a step is frozen there,
decided from the logits the step computes anyway; later restarts start it frozen too. Each
sample thus keeps its first adversarial example, and the loop ends once every sample is frozen.

Cost: one compiled tf.function per classifier runs everything (all restarts, all steps):
`steps` forward+backward passes per restart, plus one forward pass per restart to score it
when restarts > 1.
"""

import tensorflow as tf
from pydantic import BaseModel, Field, model_validator

from egide.core import Attack, hookimpl
from egide.core.gradients import cross_entropy_pass
from egide.core import randomness
from egide.core.norms import projected_gradient_step
from egide.core.params import BUDGET_UI, Budget, Norm


class PGD(Attack):
    """Iterated gradient steps from a random start, projected onto the eps-ball every step."""

    name = "pgd"
    title = "Projected Gradient Descent"
    iterative = True
    # Full strength from the image itself: a random start in a ball as large as the input range
    # is uniform noise, where the model's gradients say nothing about the image.
    full_strength = {"steps": 50, "random_start": False, "early_stop": True}
    evaluation = {"steps": 20, "restarts": 1}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = Field(
            8 / 255, gt=0, le=1e3, json_schema_extra=BUDGET_UI,
            description="Perturbation budget, in input units (8/255 ≈ 0.031); L-inf: at most 1, the "
            "whole input range"
        )
        norm: Norm = Field("inf", description="Norm of the budget: L-inf or L2")
        step_size: Budget | None = Field(
            None, json_schema_extra=BUDGET_UI,
            gt=0,
            le=1e3,
            description="Size of each step, in input units; empty (None) means 2.5 * eps / steps",
        )
        steps: int = Field(20, ge=1, le=100_000, description="Gradient steps per restart")
        random_start: bool = Field(
            True, description="Start each restart from a uniformly random point of the eps-ball"
        )
        restarts: int = Field(
            1,
            ge=1,
            le=1000,
            description="Independent random starts; each sample keeps its worst case over them",
        )
        targeted: bool = Field(
            False, description="Aim at given target labels instead of away from the true ones"
        )
        early_stop: bool = Field(
            False,
            description="Freeze each sample at its first adversarial example (misclassified, or "
            "on target) and stop when all are; otherwise every sample takes every step",
        )


        @model_validator(mode="after")
        def _restarts_need_random_start(self):
            if self.restarts > 1 and not self.random_start:
                raise ValueError(
                    "restarts > 1 needs random_start=True: without a random start every "
                    "restart repeats the same run"
                )
            return self

    @property
    def step_size(self) -> float:
        """The step size used: the parameter, or 2.5 * eps / steps when it is not set."""
        p = self.params
        return p.step_size if p.step_size is not None else 2.5 * p.eps / p.steps

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf))
        return attack(x, labels, seed)

    def _attack_function(self, clf):
        p = self.params
        eps, norm, steps, restarts = p.eps, p.norm, p.steps, p.restarts
        targeted, early_stop, random_start = p.targeted, p.early_stop, p.random_start
        alpha = self.step_size
        lo, hi = clf.clip

        def objective(logits, labels):
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            return -loss if targeted else loss

        logits_and_gradient = cross_entropy_pass(clf, targeted)

        def succeeded(logits, labels):
            pred = tf.argmax(logits, axis=1, output_type=labels.dtype)
            return tf.equal(pred, labels) if targeted else tf.not_equal(pred, labels)

        def one_restart(x0, labels, seed, frozen):
            x = x0
            if random_start:
                x = tf.clip_by_value(x0 + randomness.in_ball(tf.shape(x0), eps, norm, seed), lo, hi)

            def more(t, x, frozen):
                if early_stop:
                    return tf.logical_and(t < steps, tf.logical_not(tf.reduce_all(frozen)))
                return t < steps

            def step(t, x, frozen):
                logits, grad = logits_and_gradient(x, labels)
                moved = projected_gradient_step(x, x0, grad, alpha, eps, norm, lo, hi)
                if early_stop:
                    frozen = tf.logical_or(frozen, succeeded(logits, labels))
                    moved = tf.where(frozen[:, None, None, None], x, moved)
                return t + 1, moved, frozen

            _, x, _ = tf.while_loop(more, step, (tf.constant(0), x, frozen))
            return x

        def attack(x0, labels, seed):
            seeds = randomness.draws(seed, restarts)
            nobody = tf.zeros(tf.shape(labels), tf.bool)
            if restarts == 1:
                return one_restart(x0, labels, seeds[0], nobody)

            def more(r, best, best_value, broken):
                if early_stop:
                    return tf.logical_and(r < restarts, tf.logical_not(tf.reduce_all(broken)))
                return r < restarts

            def restart(r, best, best_value, broken):
                x = one_restart(x0, labels, seeds[r], broken if early_stop else nobody)
                logits = tf.cast(clf.logits(x), tf.float32)
                value, hit = objective(logits, labels), succeeded(logits, labels)
                # Per sample: the first restart that breaks it wins and is kept; until then,
                # the restart with the highest objective.
                better = tf.logical_and(
                    tf.logical_not(broken), tf.logical_or(hit, value > best_value)
                )
                best = tf.where(better[:, None, None, None], x, best)
                best_value = tf.where(better, value, best_value)
                return r + 1, best, best_value, tf.logical_or(broken, hit)

            lowest = tf.fill(tf.shape(labels), tf.constant(-float("inf"), tf.float32))
            _, best, _, _ = tf.while_loop(more, restart, (tf.constant(0), x0, lowest, nobody))
            return best

        return attack


@hookimpl
def egide_register_attacks(register):
    register(PGD)
