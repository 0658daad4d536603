"""Adversarial training — Madry, Makelov, Schmidt, Tsipras & Vladu (ICLR 2018).

Training solves the saddle-point problem min_theta E[max_{||delta||_inf <= eps} CE(f(x + delta), y)]:
the inner maximisation is approximated by L-inf PGD from a random start in the eps-ball, and
the weights take a gradient step on the loss at the points PGD found. With `adv_ratio` < 1 only
that share of each batch is replaced by its PGD examples and the rest stays clean (the mixed
objective of Goodfellow et al. 2015 and Kurakin et al. 2017), trading robustness for clean
accuracy.

The defaults fine-tune the given model at eps 4/255 with PGD-7 and the usual step of
2.5 * eps / steps (as the `pgd` attack; enough to cross the ball from any random start): on the
brain-MRI demo they reach the issue's goal in a few minutes on 2 CPU cores (docs/decisions.md).
"""

import tensorflow as tf
from pydantic import Field

from egide.core import Trainer, TrainerParams, hookimpl
from egide.core.params import BUDGET_UI, Budget
from egide.core.gradients import projected_gradient_ascent


class AdversarialTraining(Trainer):
    """Train on PGD examples (Madry et al. 2018): each batch replaced, or mixed, by its attack."""

    name = "adversarial-training"
    title = "PGD adversarial training"

    class Params(TrainerParams):
        steps: int = Field(7, ge=1, le=1000, description="PGD steps of the inner attack")
        step_size: Budget | None = Field(
            None, json_schema_extra=BUDGET_UI, gt=0, le=1,
            description="PGD step, in input units at the full eps; empty (None) means 2.5 * eps / steps",
        )
        adv_ratio: float = Field(
            1.0, ge=0, le=1,
            description="Share of each batch replaced by its PGD examples (1: all, 0: clean training)",
        )

    def adversarial(self, ctx, x, y, eps, seed):
        p = self.params
        alpha = (p.step_size if p.step_size is not None else 2.5 * p.eps / p.steps) / p.eps
        if p.adv_ratio == 0:
            return x
        # Only the first share of the (shuffled) batch is attacked; the rest stays clean.
        n = tf.cast(tf.round(p.adv_ratio * tf.cast(tf.shape(x)[0], tf.float32)), tf.int32)
        x_adv = projected_gradient_ascent(
            ctx.input_gradient, x[:n], y[:n], eps, p.steps, alpha * eps, seed, ctx.clf.clip
        )
        return tf.concat([x_adv, x[n:]], axis=0)


@hookimpl
def egide_register_defenses(register):
    register(AdversarialTraining)
