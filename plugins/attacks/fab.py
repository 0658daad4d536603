"""FAB — Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted adversarial examples
with a fast adaptive boundary attack", ICML 2020). A minimal-perturbation attack in L-inf, L2 or L1.

Each iteration linearises the classifier at the current point x_k and takes the decision
hyperplane of the closest class s (untargeted: the one with the smallest |f_s| / ||w_s||_q,
f_s = z_s - z_y, w_s = grad f_s, q the dual norm; targeted: the target class). It projects both
x_k and the original image x onto that hyperplane, inside the input box (the projections delta
and delta_orig, each the smallest change in the attack's norm), and moves to a mix of the two:

    x_{k+1} = clip((1 - a)(x_k + eta * delta) + a (x + eta * delta_orig)),
    a = min(||delta|| / (||delta|| + ||delta_orig||), alpha_max)

so it stays close to x while heading for the boundary (eta overshoots it a little). When x_{k+1}
is adversarial it is recorded if it is the closest so far, and the search steps back towards x,
x_{k+1} = (1 - beta) x + beta x_{k+1}, to look for a closer one.

The box-constrained projections onto a hyperplane are solved exactly by bisection on their one
Lagrange multiplier (L2: delta = clip(lambda w); L-inf: delta = clip(t sign(w))), 40 halvings;
in L1 by spending the coordinates with the largest |w_i| first (one sort, `_l1.l1_hyperplane_step`).

As AutoAttack runs it: `target_classes` > 0 is FAB-T, one run per target among the highest-scoring
other classes of the clean image; restarts after the first start from a random point at half of
`eps` around x. With `eps` set, an adversarial farther than eps counts as not found (the image is
returned unchanged); without it the closest adversarial found is returned, however far.

Cost per iteration: one forward pass, one backward pass per class (untargeted) or one (targeted),
and one forward pass to check the new point; only on the samples not yet broken within eps.
"""

from __future__ import annotations

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl, randomness
from egide.core.norms import per_sample, sample_axes
from egide.core.params import BUDGET_UI, Budget, NormWithL1
from egide.plugins.attacks._l1 import l1_hyperplane_step

_TINY = 1e-12
_HALVINGS = 40


class FAB(Attack):
    """Closest linearised boundary, reached from both the current point and the image."""

    name = "fab"
    title = "Fast Adaptive Boundary (FAB)"
    budget = "minimal"

    class Params(BaseModel, extra="forbid", frozen=True):
        norm: NormWithL1 = Field("inf", description="Norm of the perturbation it minimises: L-inf, L2 or L1")
        eps: Budget | None = Field(
            None, json_schema_extra=BUDGET_UI, gt=0, le=1e3,
            description="If set: an adversarial farther than this counts as not found, and later "
            "restarts start at half of it around the image (AutoAttack's use)",
        )
        steps: int = Field(100, ge=1, le=10_000, description="Iterations per run")
        restarts: int = Field(1, ge=1, le=100, description="Runs; after the first, from random starts")
        target_classes: int = Field(
            0, ge=0, le=1000,
            description="0: untargeted (closest boundary); k > 0: FAB-T, one run per each of the k "
            "highest-scoring other classes",
        )
        alpha_max: float = Field(0.1, ge=0, le=1, description="Largest weight of the step from the image")
        overshoot: float = Field(1.05, ge=1, le=2, description="eta: how far past the boundary each step aims")
        backward: float = Field(0.9, gt=0, le=1, description="beta: the step back towards the image after a hit")

    def perturb(self, clf, x, y, target, seed):
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        return attack(x, y, seed)

    def _attack_function(self, clf):
        p = self.params
        lo, hi = clf.clip
        norm, eps = p.norm, p.eps
        classes = clf.num_classes
        targets = min(p.target_classes, classes - 1)
        runs = p.restarts * max(targets, 1)

        def size(d):
            if norm == "inf":
                return tf.reduce_max(tf.abs(d), axis=sample_axes(d))
            if norm == "1":
                return tf.reduce_sum(tf.abs(d), axis=sample_axes(d))
            return tf.sqrt(tf.reduce_sum(tf.square(d), axis=sample_axes(d)))

        def dual(w):  # over an image's axes, the last ones of w (B, K, ...)
            axes = list(range(2, w.shape.rank))
            if norm == "inf":
                return tf.reduce_sum(tf.abs(w), axis=axes)
            if norm == "1":
                return tf.reduce_max(tf.abs(w), axis=axes)
            return tf.sqrt(tf.reduce_sum(tf.square(w), axis=axes))

        @tf.function(experimental_attributes={"_noinline": True}, reduce_retracing=True)
        def linearise(x, y, goal):
            """f = z_goal - z_y and w = its input gradient, for the chosen (or closest) class."""
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(x)
                z = tf.cast(clf.logits(x), tf.float32)
                z_y = tf.gather(z, y, batch_dims=1)
                diffs = [z[:, k] - z_y for k in range(classes)] if targets == 0 else None
                f_goal = tf.gather(z, goal, batch_dims=1) - z_y
            if targets:
                w = tape.gradient(f_goal, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                del tape
                return f_goal, w
            ws = tf.stack([tape.gradient(d, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                           for d in diffs], axis=1)  # (B, K, H, W, C)
            del tape
            f = tf.stack(diffs, axis=1)  # (B, K)
            distance = tf.abs(f) / (dual(ws) + _TINY)
            distance = tf.where(tf.one_hot(y, classes, on_value=True, off_value=False), float("inf"), distance)
            s = tf.argmin(distance, axis=1, output_type=tf.int32)
            return tf.gather(f, s, batch_dims=1), tf.gather(ws, s, batch_dims=1)

        def project(w, c, low, high):
            """The smallest delta (in the attack's norm) with <w, delta> = c and low <= delta <= high,
            per sample; the closest the box allows when the hyperplane misses it."""
            if norm == "1":
                return l1_hyperplane_step(w, c, low, high)
            direction = tf.sign(w) * per_sample(tf.sign(c), w)
            if norm == "inf":
                def at(t):
                    return tf.clip_by_value(per_sample(t, direction) * direction, low, high)
                top = tf.fill(tf.shape(c), float(hi - lo))
            else:
                a = w * per_sample(tf.sign(c), w)
                def at(t):
                    return tf.clip_by_value(per_sample(t, a) * a, low, high)
                # Past the last breakpoint every coordinate is clipped.
                bounds = tf.maximum(tf.abs(low), tf.abs(high)) / (tf.abs(w) + _TINY)
                top = tf.reduce_max(bounds, axis=sample_axes(bounds))
            target = tf.abs(c)
            bottom = tf.zeros_like(top)
            for _ in range(_HALVINGS):  # <w, delta(t)> grows with t towards sign(c)
                mid = (bottom + top) / 2.0
                reached = tf.abs(tf.reduce_sum(w * at(mid), axis=sample_axes(w))) >= target
                top, bottom = tf.where(reached, mid, top), tf.where(reached, bottom, mid)
            return at(top)

        def one_run(x0, y, goal, start):
            n = tf.shape(x0)[0]

            def adversarial(x):
                return tf.not_equal(tf.argmax(clf.logits(x), axis=1, output_type=y.dtype), y)

            def step(i, x, best, x_best):
                f, w = linearise(x, y, goal)
                delta = project(w, -f, lo - x, hi - x)
                c_orig = -(f + tf.reduce_sum(w * (x0 - x), axis=sample_axes(w)))
                delta_orig = project(w, c_orig, lo - x0, hi - x0)
                d1, d2 = size(delta), size(delta_orig)
                alpha = per_sample(tf.minimum(d1 / (d1 + d2 + _TINY), p.alpha_max), x0)
                x_new = tf.clip_by_value(
                    (1.0 - alpha) * (x + p.overshoot * delta) + alpha * (x0 + p.overshoot * delta_orig),
                    lo, hi)
                hit = adversarial(x_new)
                distance = size(x_new - x0)
                closer = tf.logical_and(hit, distance < best)
                best = tf.where(closer, distance, best)
                x_best = tf.where(per_sample(closer, x_new), x_new, x_best)
                back = (1.0 - p.backward) * x0 + p.backward * x_new
                x_new = tf.where(per_sample(hit, x_new), back, x_new)
                return i + 1, x_new, best, x_best

            best = tf.fill([n], float("inf"))
            _, _, best, x_best = tf.while_loop(lambda i, *_: i < p.steps, step,
                                               (tf.constant(0), start, best, x0))
            return x_best, best

        def random_start(x0, seed, rows):
            if eps is None:
                return x0
            u = randomness.for_rows(seed, rows)(lambda shape, s: randomness.uniform(shape, s, -1.0, 1.0),
                                                tf.shape(x0)[1:])
            u = u / (per_sample(size(u), u) + _TINY)  # on the unit sphere of the norm
            return tf.clip_by_value(x0 + 0.5 * eps * u, lo, hi)

        def attack(x0, y, seed):
            clean = tf.cast(clf.logits(x0), tf.float32)
            done = tf.not_equal(tf.argmax(clean, axis=1, output_type=y.dtype), y)  # not attacked
            ranked = tf.cast(tf.argsort(clean, axis=1, direction="DESCENDING", stable=True), y.dtype)
            seeds = randomness.draws(seed, runs)
            x_out, best = x0, tf.fill(tf.shape(y), float("inf"))
            for r in range(runs):
                todo = tf.where(tf.logical_not(done))[:, 0]
                x_t, y_t = tf.gather(x0, todo), tf.gather(y, todo)
                goal = tf.gather(ranked[:, 1 + r // p.restarts], todo) if targets else y_t
                start = x_t if r % p.restarts == 0 else random_start(x_t, seeds[r], todo)
                # Skipped once every point is done: no empty batches through the model (TensorFlow's
                # oneDNN convolutions fail on them inside a loop).
                found, distance = tf.cond(tf.size(todo) > 0, lambda: one_run(x_t, y_t, goal, start),
                                          lambda: (x_t, tf.zeros([0], tf.float32)))
                closer = distance < tf.gather(best, todo)
                rows = tf.boolean_mask(todo, closer)[:, None]
                x_out = tf.tensor_scatter_nd_update(x_out, rows, tf.boolean_mask(found, closer))
                best = tf.tensor_scatter_nd_update(best, rows, tf.boolean_mask(distance, closer))
                within = tf.math.is_finite(best) if eps is None else best <= eps
                done = tf.logical_or(done, within)
            if eps is not None:
                # An adversarial beyond eps is not an answer at this budget: the image stays clean.
                x_out = tf.where(per_sample(best > eps, x0), x0, x_out)
            return x_out

        return attack


@hookimpl
def egide_register_attacks(register):
    register(FAB)
