"""DeepFool — Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool
deep neural networks" (CVPR 2016). A minimal-perturbation attack, in L2 or L-inf.

At each iteration the classifier is linearised around the current point: for every candidate
class k (the `candidates` highest-scoring classes of the clean image, the original one aside)
w_k = grad z_k - grad z_orig and f_k = z_k - z_orig give the distance to that linearised boundary,
|f_k| / ||w_k||_q (q the dual norm: 2 for L2, 1 for L-inf). The step goes to the closest one:

    L2:    r = (|f_k| + 1e-4) / ||w_k||_2^2 * w_k
    L-inf: r = (|f_k| + 1e-4) / ||w_k||_1   * sign(w_k)

The steps add up (r_total), and the adversarial image is x + (1 + overshoot) r_total, clipped into
the input range; a sample stops at its first misclassification, or after `steps` iterations.

Cost: per iteration, one forward pass and `candidates` backward passes (one per class gradient),
on the samples not yet broken only.
"""

from __future__ import annotations

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl
from egide.core.norms import per_sample
from egide.core.params import Norm

_TINY = 1e-8
_NUDGE = 1e-4  # added to |f_k|, as in the paper, so that each step crosses the linearised boundary


class DeepFool(Attack):
    """Steps to the nearest linearised decision boundary until the label flips."""

    name = "deepfool"
    title = "DeepFool"
    budget = "minimal"

    class Params(BaseModel, extra="forbid", frozen=True):
        norm: Norm = Field("2", description="Norm of the perturbation it minimises: L2 or L-inf")
        steps: int = Field(50, ge=1, le=10_000, description="Largest number of iterations")
        overshoot: float = Field(
            0.02, ge=0, le=10, description="The total step is (1 + overshoot) times the sum of steps"
        )
        candidates: int = Field(
            10, ge=2, le=1000,
            description="Classes considered: the highest-scoring ones of the clean image",
        )

    def perturb(self, clf, x, y, target, seed):
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        return attack(x, y)

    def _attack_function(self, clf):
        p = self.params
        lo, hi = clf.clip
        k = min(p.candidates, clf.num_classes)
        l2 = p.norm == "2"

        @tf.function(experimental_attributes={"_noinline": True}, reduce_retracing=True)
        def logits_and_gradients(x, classes):
            """Logits, and the input gradient of each class in `classes` (B, k): (B, k, H, W, C)."""
            grads = []
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(x)
                z = tf.cast(clf.logits(x), tf.float32)
                picked = tf.gather(z, classes, batch_dims=1)
                columns = [picked[:, j] for j in range(k)]
            for column in columns:
                grads.append(tape.gradient(column, x, unconnected_gradients=tf.UnconnectedGradients.ZERO))
            del tape
            return z, picked, tf.stack(grads, axis=1)

        def attack(x0, y):
            clean = tf.cast(clf.logits(x0), tf.float32)
            classes = tf.cast(tf.argsort(clean, axis=1, direction="DESCENDING")[:, :k], y.dtype)
            original = classes[:, 0]  # the attack moves away from the clean prediction
            broken0 = tf.not_equal(original, y)

            def more(i, r_total, broken):
                return tf.logical_and(i < p.steps, tf.reduce_any(tf.logical_not(broken)))

            def step(i, r_total, broken):
                todo = tf.where(tf.logical_not(broken))[:, 0]
                x_t = tf.gather(x0, todo)
                r_t = tf.gather(r_total, todo)
                x_adv = tf.clip_by_value(x_t + (1.0 + p.overshoot) * r_t, lo, hi)
                z, picked, grads = logits_and_gradients(x_adv, tf.gather(classes, todo))
                label = tf.argmax(z, axis=1, output_type=y.dtype)
                flipped = tf.not_equal(label, tf.gather(original, todo))
                f = picked[:, 1:] - picked[:, :1]  # (n, k-1): z_k - z_orig
                w = grads[:, 1:] - grads[:, :1]  # (n, k-1, H, W, C), or (n, k-1, D, H, W, C)
                image_axes = list(range(2, w.shape.rank))
                if l2:
                    size = tf.sqrt(tf.reduce_sum(tf.square(w), axis=image_axes))
                else:
                    size = tf.reduce_sum(tf.abs(w), axis=image_axes)
                distance = tf.abs(f) / (size + _TINY)
                nearest = tf.argmin(distance, axis=1, output_type=tf.int32)
                w_k = tf.gather(w, nearest, batch_dims=1)
                f_k = tf.abs(tf.gather(f, nearest, batch_dims=1)) + _NUDGE
                size_k = tf.gather(size, nearest, batch_dims=1)
                if l2:
                    r = per_sample(f_k / (tf.square(size_k) + _TINY), w_k) * w_k
                else:
                    r = per_sample(f_k / (size_k + _TINY), w_k) * tf.sign(w_k)
                # A sample that already flipped keeps its perturbation.
                r = tf.where(per_sample(flipped, r), tf.zeros_like(r), r)
                r_total = tf.tensor_scatter_nd_add(r_total, todo[:, None], r)
                broken = tf.tensor_scatter_nd_update(broken, todo[:, None], flipped)
                return i + 1, r_total, broken

            _, r_total, _ = tf.while_loop(more, step, (tf.constant(0), tf.zeros_like(x0), broken0))
            return tf.clip_by_value(x0 + (1.0 + p.overshoot) * r_total, lo, hi)

        return attack


@hookimpl
def egide_register_attacks(register):
    register(DeepFool)
