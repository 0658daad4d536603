"""The projected-gradient family: PGD, BIM and MIM are one loop with different parameters.

From a start (the image, or a random point of the eps-ball), take `steps` steps of size
`step_size` along the steepest-ascent direction of the cross-entropy loss (descent of the
target's, when targeted) — sign for L-inf, the unit L2 direction for L2 — and after every step
project onto the ball and clip into the classifier's range. MIM steps along a velocity instead of
the gradient: v <- decay * v + grad / ||grad||_1. As Foolbox 3 makes BIM a variant of its PGD,
each plugin here only declares its parameters and its default step: BIM is PGD from the image
with 1.25 * eps / steps (L-inf), MIM adds the momentum with eps / steps.

Optional, when a plugin's parameters have them: `random_start`, `restarts` (each sample keeps the
first restart that breaks it, else the one with the highest loss) and `early_stop` (a sample is
frozen at its first adversarial example). Randomness is per image (egide.core.randomness).

The parameters they share are built by `_params.py`, as every attack's are.
"""

import tensorflow as tf

from egide.core import Attack, randomness
from egide.core.gradients import cross_entropy_pass
from egide.core.norms import per_sample, per_sample_l1, projected_gradient_step

_TINY = 1e-12


class ProjectedGradient(Attack):
    """The loop of the family; a plugin declares `Params` and `step_factor` (and `momentum`)."""

    iterative = True
    step_factor = 2.5  # the default step is step_factor * eps / steps
    momentum = False  # MIM: step along the L1-normalised velocity

    @property
    def step_size(self) -> float:
        """The step size used: the parameter, or step_factor * eps / steps when it is not set."""
        p = self.params
        return p.step_size if p.step_size is not None else self.step_factor * p.eps / p.steps

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        return attack(x, labels, seed)

    def _attack_function(self, clf):
        p = self.params
        eps, steps, targeted = p.eps, p.steps, p.targeted
        norm = getattr(p, "norm", "inf")
        restarts = getattr(p, "restarts", 1)
        early_stop = getattr(p, "early_stop", False)
        random_start = getattr(p, "random_start", False)
        decay = getattr(p, "decay", 0.0)
        alpha = self.step_size
        lo, hi = clf.clip
        logits_and_gradient = cross_entropy_pass(clf, targeted)

        def objective(logits, labels):
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            return -loss if targeted else loss

        def succeeded(logits, labels):
            pred = tf.argmax(logits, axis=1, output_type=labels.dtype)
            return tf.equal(pred, labels) if targeted else tf.not_equal(pred, labels)

        def one_restart(x0, labels, seed, frozen):
            x = x0
            if random_start:
                x = tf.clip_by_value(x0 + randomness.in_ball(tf.shape(x0), eps, norm, seed), lo, hi)

            def more(t, x, velocity, frozen):
                if early_stop:
                    return tf.logical_and(t < steps, tf.logical_not(tf.reduce_all(frozen)))
                return t < steps

            def step(t, x, velocity, frozen):
                logits, grad = logits_and_gradient(x, labels)
                if self.momentum:
                    velocity = decay * velocity + grad / tf.maximum(per_sample_l1(grad), _TINY)
                    grad = velocity
                moved = projected_gradient_step(x, x0, grad, alpha, eps, norm, lo, hi)
                if early_stop:
                    frozen = tf.logical_or(frozen, succeeded(logits, labels))
                    moved = tf.where(per_sample(frozen, x), x, moved)
                return t + 1, moved, velocity, frozen

            _, x, _, _ = tf.while_loop(more, step, (tf.constant(0), x, tf.zeros_like(x0), frozen))
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
                better = tf.logical_and(tf.logical_not(broken), tf.logical_or(hit, value > best_value))
                best = tf.where(per_sample(better, x), x, best)
                best_value = tf.where(better, value, best_value)
                return r + 1, best, best_value, tf.logical_or(broken, hit)

            lowest = tf.fill(tf.shape(labels), tf.constant(-float("inf"), tf.float32))
            _, best, _, _ = tf.while_loop(more, restart, (tf.constant(0), x0, lowest, nobody))
            return best

        return attack
