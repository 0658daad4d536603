"""APGD's L1 run (Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image
classifiers", ICML 2021), as AutoAttack runs it for its L1 threat model.

The L1 ball's steepest-ascent direction is one coordinate, which moves far too little; l1-APGD
instead steps along the signs of the largest `topk` share of the gradient's coordinates,
normalised to L1 size 1, then projects exactly onto the L1 ball intersected with the input box
(`_l1.project_l1_box`). No momentum. Every 4% of the iterations a checkpoint adapts the
sparsity to that of the best point so far (topk = its nonzero count / 1.5, as a share): if it
dropped by over 5%, the step size goes back to its start (eps) and the run restarts from the
best point; otherwise the step shrinks by 1.5, never below eps / 10.

`eps_schedule` (AutoAttack's `use_largereps`, on in its L1 protocol): 30% of the iterations at
3 eps, 30% at 2 eps, 40% at eps, each stage starting from where the last ended, projected onto
the smaller ball; only the last stage's points count, so every result is within eps.
"""

from __future__ import annotations

import math

import tensorflow as tf

from egide.core import randomness
from egide.core.norms import per_sample, sample_axes

from ._l1 import nonzero_count, project_l1_box

CHECK_EVERY = 0.04  # share of the iterations between two sparsity checkpoints
SPARSITY_DROP = 0.95  # the best point's nonzero count fell below this share of the last one's
SPARSITY_MARGIN = 1.5  # topk = nonzero count of the best point / this, as a share
STEP_DECAY = 1.5  # the step shrinks by this at a checkpoint where sparsity held
SMALLEST_STEP = 10.0  # ... down to eps / this
FIRST_TOPK = 0.2  # share of coordinates stepped on at first, from a random start
SCHEDULE = ((3.0, 0.3), (2.0, 0.3), (1.0, 0.4))  # (multiple of eps, share of the iterations)


def l1_run(model_pass, succeeded, eps: float, steps: int, lo: float, hi: float, schedule: bool):
    """one_run(x0, y, goal, seed, rows) -> (first adversarial or best point, broken, best
    objective), as APGD's L-inf/L2 run returns them."""

    def stages():
        if not schedule:
            return [(eps, steps)]
        counts = [math.ceil(share * steps) for _, share in SCHEDULE[:-1]]
        counts.append(max(steps - sum(counts), 1))
        return [(m * eps, c) for (m, _), c in zip(SCHEDULE, counts)]

    def single(x0, y, goal, x_start, radius, iterations, topk, sparsity):
        n = tf.shape(x0)[0]
        dims = tf.cast(tf.reduce_prod(tf.shape(x0)[1:]), tf.float32)
        every = max(int(CHECK_EVERY * iterations), 1)
        logits, value, grad = model_pass(x_start, y, goal)
        start = dict(i=tf.constant(0), x=x_start, grad=grad, x_best=x_start, best=value, grad_best=grad,
                     broken=succeeded(logits, y, goal), x_found=x_start, eta=tf.fill([n], radius),
                     topk=topk, sparsity=sparsity)

        def sparse_step(s):
            magnitude = tf.sort(tf.reshape(tf.abs(s["grad"]), [n, -1]), axis=1)
            at = tf.cast(tf.clip_by_value(tf.floor((1.0 - s["topk"]) * dims), 0.0, dims - 1.0), tf.int32)
            threshold = per_sample(tf.gather(magnitude, at, batch_dims=1), s["grad"])
            direction = tf.sign(s["grad"]) * tf.cast(tf.abs(s["grad"]) >= threshold, tf.float32)
            size = tf.reduce_sum(tf.abs(direction), axis=sample_axes(direction), keepdims=True) + 1e-10
            return project_l1_box(x0, s["x"] + per_sample(s["eta"], direction) * direction / size,
                                  radius, lo, hi)

        def iteration(s):
            x = sparse_step(s)
            logits, value, grad = model_pass(x, y, goal)
            hit = succeeded(logits, y, goal)
            first_hit = per_sample(tf.logical_and(hit, tf.logical_not(s["broken"])), x)
            improved = value > s["best"]
            i4 = per_sample(improved, x)
            out = dict(s, i=s["i"] + 1, x=x, grad=grad, broken=tf.logical_or(s["broken"], hit),
                       x_found=tf.where(first_hit, x, s["x_found"]), best=tf.where(improved, value, s["best"]),
                       x_best=tf.where(i4, x, s["x_best"]), grad_best=tf.where(i4, grad, s["grad_best"]))
            return tf.cond(tf.equal(out["i"] % every, 0), lambda: checkpoint(out), lambda: out)

        def checkpoint(s):
            count = nonzero_count(s["x_best"] - x0)
            sparser = count / s["sparsity"] < SPARSITY_DROP
            s4 = per_sample(sparser, x0)
            eta = tf.clip_by_value(tf.where(sparser, radius, s["eta"] / STEP_DECAY), radius / SMALLEST_STEP, radius)
            return dict(s, topk=count / dims / SPARSITY_MARGIN, sparsity=count, eta=eta,
                        x=tf.where(s4, s["x_best"], s["x"]), grad=tf.where(s4, s["grad_best"], s["grad"]))

        return tf.while_loop(lambda s: s["i"] < iterations, lambda s: (iteration(s),), (start,))[0]

    def one_run(x0, y, goal, seed, rows=None):
        shape = tf.shape(x0)
        noise = (randomness.normal(shape, seed) if rows is None
                 else randomness.for_rows(seed, rows)(randomness.normal, shape[1:]))
        plan = stages()
        x = project_l1_box(x0, x0 + noise, plan[0][0], lo, hi)
        n, dims = shape[0], tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
        # From a random start, the first steps move a fifth of the coordinates; a stage that goes
        # on from the last one starts at the sparsity it reached.
        topk, sparsity = tf.fill([n], FIRST_TOPK), tf.fill([n], dims)
        for k, (radius, iterations) in enumerate(plan):
            if k or schedule:  # a given start (AutoAttack's x_init): its own sparsity
                x = project_l1_box(x0, x, radius, lo, hi)
                sparsity = nonzero_count(x - x0)
                topk = sparsity / dims / SPARSITY_MARGIN
            final = single(x0, y, goal, x, radius, iterations, topk, sparsity)
            x = final["x_best"]
        b4 = per_sample(final["broken"], x0)
        return tf.where(b4, final["x_found"], final["x_best"]), final["broken"], final["best"]

    return one_run
