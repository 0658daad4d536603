"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020): a score-based black-box
attack. It never uses a gradient — only the model's outputs — so it is the check against
gradient masking: a model that only hides its gradients falls to it.

Random search over localized square-shaped updates. Every query changes one square window of
side s of each image, at a random place, and keeps the change if the margin loss
z_y - max_{i != y} z_i (or -CE) went down; a sample stops at its first misclassification.
The side shrinks as the search goes on: s = round(sqrt(p * H * W)), with p halving from
`p_init` at fixed points of the query budget (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000
of 10,000, rescaled to `queries` unless `rescale_schedule` is off).

- L-inf: the start is x + eps * (random +-1 per column and channel, vertical stripes); an update
  sets the window of each channel to +-eps around the clean image (the search's vertices).
- L2: the start is a grid of s = H/5 blocks, each a +-eta pattern (two opposite "rings" of
  weight 1/(k+1)^2); an update moves the mass of a second random window into the first one,
  reshaped as a fresh +-eta pattern, keeping the perturbation on the eps-sphere.
- L1 (the version AutoAttack's L1 standard runs): as L2 with every size measured in L1, rings of
  weight 1/(k+1)^4 (more mass at the centre: sparser), and each new point projected onto the L1
  ball inside the input box (`_l1.project_l1_box`) instead of rescaled to the sphere.

Departures from the reference code, both toward the paper: the window and signs are drawn for
each image (the reference draws one window and one sign per batch and iteration), and a
window may sit at the last row and column.

Cost: one forward pass per query, on the samples still unbroken only.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl, randomness
from egide.core.params import Budget, NormWithL1
from egide.plugins.attacks._l1 import project_l1_box
from egide.plugins.attacks._params import eps_field, norm_field, targeted_field

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10,000 queries: p halves after each
_TINY = 1e-12


class Square(Attack):
    """Random search with square-shaped updates, from the model's scores only."""

    name = "square"
    title = "Square Attack (black-box)"
    full_strength = {"queries": 5000}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field()
        norm: NormWithL1 = norm_field("Norm of the budget: L-inf, L2 or L1")
        queries: int = Field(5000, ge=1, le=1_000_000, description="Model queries per sample and restart")
        p_init: float = Field(
            0.8, gt=0, le=1,
            description="Share of the image the first squares cover (halved along the schedule)",
        )
        restarts: int = Field(1, ge=1, le=100, description="Searches, each on the samples still unbroken")
        rescale_schedule: bool = Field(
            True,
            description="Stretch the p schedule (written for 10,000 queries) to the query budget; "
            "AutoAttack's standard version runs 5,000 queries on the unstretched schedule",
        )
        loss: Literal["margin", "ce"] = Field(
            "margin", description="What the search lowers: the logit margin, or minus the cross-entropy"
        )
        targeted: bool = targeted_field()

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf))
        return attack(x, labels, seed)

    def side(self, query: int, h: int, w: int) -> int:
        """The square's side at a query (0-based), as the schedule sets it."""
        p = self.params
        at = int(query / p.queries * 10000) if p.rescale_schedule else query
        halvings = sum(at > mark for mark in SCHEDULE)
        share = p.p_init / 2**halvings
        smallest = 1 if p.norm == "inf" else 3
        s = max(int(round(math.sqrt(share * h * w))), smallest)
        if p.norm != "inf" and s % 2 == 0:
            s += 1
        return min(s, h, w)

    # ---- the search ---------------------------------------------------------------------------
    def _attack_function(self, clf):
        p = self.params
        eps, targeted = p.eps, p.targeted
        lo, hi = clf.clip
        h, w, c = clf.input_shape
        # Stages: runs of queries with the same square side (static shapes inside each loop).
        stages = []
        for q in range(p.queries):
            s = self.side(q, h, w)
            if stages and stages[-1][2] == s:
                stages[-1][1] = q + 1
            else:
                stages.append([q, q + 1, s])

        # The model's forward pass in a graph of its own (see egide.core.gradients: inlined into a
        # while loop, TensorFlow may pick slower kernels for it).
        forward = tf.function(lambda x: tf.cast(clf.logits(x), tf.float32),
                              experimental_attributes={"_noinline": True}, reduce_retracing=True)

        def scores(x, labels):
            """(margin, loss) per sample: the search lowers loss; margin <= 0 is success."""
            logits = forward(x)
            own = tf.gather(logits, labels, batch_dims=1)
            others = tf.reduce_max(
                tf.where(tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False),
                         -np.inf, logits), axis=1)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            if targeted:
                return others - own, ce
            return own - others, (own - others if p.loss == "margin" else -ce)

        def clip_linf(x_new, x0):
            return tf.clip_by_value(tf.clip_by_value(x_new, x0 - eps, x0 + eps), lo, hi)

        def place(n, s, seed, rows):
            """Per image (rows: its place in the batch): a random window of side s, as a boolean
            mask (n, H, W, 1), and its offsets."""
            def offset(k, room):
                u = randomness.for_rows(randomness.draw(seed, k), rows)(randomness.uniform, [1])[:, 0]
                return tf.minimum(tf.cast(tf.floor(u * room), tf.int32), room - 1)

            vh, vw = offset(0, h - s + 1), offset(1, w - s + 1)
            grid_h, grid_w = tf.range(h)[None, :], tf.range(w)[None, :]
            in_h = tf.logical_and(grid_h >= vh[:, None], grid_h < vh[:, None] + s)
            in_w = tf.logical_and(grid_w >= vw[:, None], grid_w < vw[:, None] + s)
            return tf.logical_and(in_h[:, :, None, None], in_w[:, None, :, None]), vh, vw

        def signs(row_shape, seed, rows):
            return randomness.for_rows(seed, rows)(randomness.signs, row_shape)

        def linf_update(x0, x_best, s, seed, rows):
            mask, _, _ = place(tf.shape(x0)[0], s, randomness.draw(seed, 0), rows)
            window = 2.0 * eps * signs([1, 1, c], randomness.draw(seed, 1), rows)
            return clip_linf(x_best + tf.cast(mask, tf.float32) * window, x0)

        def size(t, axes):
            if p.norm == "1":
                return tf.reduce_sum(tf.abs(t), axis=axes, keepdims=True)
            return tf.sqrt(tf.reduce_sum(tf.square(t), axis=axes, keepdims=True))

        def onto_budget(x0, delta):
            """x0 + delta brought to the budget: L2 onto the eps-sphere (then the box), L1 onto
            the L1 ball inside the box."""
            if p.norm == "1":
                return project_l1_box(x0, x0 + delta, eps * (1.0 - 1e-6), lo, hi)
            return tf.clip_by_value(x0 + eps * delta / (size(delta, [1, 2, 3]) + _TINY), lo, hi)

        def mass_update(x0, x_best, s, pattern, seed, rows):
            n = tf.shape(x0)[0]
            delta = x_best - x0
            mask1, vh, vw = place(n, s, randomness.draw(seed, 0), rows)
            mask2, _, _ = place(n, s, randomness.draw(seed, 1), rows)
            m1, either = tf.cast(mask1, tf.float32), tf.cast(tf.logical_or(mask1, mask2), tf.float32)
            norm_image = size(delta, [1, 2, 3])
            norm_window1 = size(delta * m1, [1, 2])  # per channel
            norm_windows = size(delta * either, [1, 2])
            # The new window: a fresh +-eta pattern plus the old window's direction, rescaled to
            # carry the mass of both windows and what the budget has left. The pattern is
            # transposed for half of the queries, drawn per image.
            flip = randomness.for_rows(randomness.draw(seed, 2), rows)(randomness.uniform, [1])[:, 0] > 0.5
            eta = tf.where(flip[:, None, None], tf.transpose(pattern)[None], pattern[None])
            fresh = _at_window(eta[:, :, :, None], vh, vw, h, w) * signs([1, 1, c], randomness.draw(seed, 3), rows)
            new = m1 * (fresh + delta / (norm_window1 + _TINY))
            if p.norm == "1":  # the reference's L1 rule (the projection below keeps the budget)
                mass = (tf.maximum(eps - norm_image, 0.0) / c + norm_windows) * c
            else:
                mass = tf.sqrt(tf.maximum(eps**2 - tf.square(norm_image), 0.0) / c + tf.square(norm_windows))
            new = new / (size(new, [1, 2]) + _TINY) * mass
            return onto_budget(x0, delta * (1.0 - either) + new)

        def start(x0, seed, rows):
            n = tf.shape(x0)[0]
            if p.norm == "inf":
                return clip_linf(x0 + eps * signs([1, w, c], seed, rows), x0)
            s = max(h // 5, 1)
            block = tf.constant(_eta(s, p.norm), tf.float32)[None, :, :, None]
            delta = tf.zeros_like(x0)
            k, top = 0, (h - 5 * s) // 2
            for bh in range(h // s):
                for bw in range(w // s):
                    vh = tf.fill([n], top + bh * s)
                    vw = tf.fill([n], top + bw * s)
                    delta += _at_window(block, vh, vw, h, w) * signs([1, 1, c], randomness.draw(seed, k), rows)
                    k += 1
            return onto_budget(x0, delta)

        def search(x0, labels, seed, batch_rows):
            """One search on the samples given (batch_rows: their places in the batch, whose
            images' own draws they use); returns (best point, broken)."""
            x_best = start(x0, randomness.draw(seed, 0), batch_rows)
            margin, loss = scores(x_best, labels)
            for k, (first, last, s) in enumerate(stages):
                pattern = tf.constant(_eta(s, p.norm), tf.float32) if p.norm != "inf" else None
                stage_seed = randomness.draw(seed, k + 1)

                def more(q, x_best, margin, loss, last=last):
                    return tf.logical_and(q < last, tf.reduce_any(margin > 0))

                def query(q, x_best, margin, loss, s=s, pattern=pattern, stage_seed=stage_seed):
                    todo = tf.where(margin > 0)[:, 0]
                    x0_t, best_t = tf.gather(x0, todo), tf.gather(x_best, todo)
                    q_seed, rows = randomness.draw(stage_seed, q), tf.gather(batch_rows, todo)
                    if p.norm == "inf":
                        x_new = linf_update(x0_t, best_t, s, q_seed, rows)
                    else:
                        x_new = mass_update(x0_t, best_t, s, pattern, q_seed, rows)
                    m_new, l_new = scores(x_new, tf.gather(labels, todo))
                    lower = l_new < tf.gather(loss, todo)
                    keep = tf.logical_or(lower, m_new <= 0)
                    at = todo[:, None]
                    loss = tf.tensor_scatter_nd_update(loss, at, tf.where(lower, l_new, tf.gather(loss, todo)))
                    margin = tf.tensor_scatter_nd_update(
                        margin, at, tf.where(keep, m_new, tf.gather(margin, todo)))
                    x_best = tf.tensor_scatter_nd_update(
                        x_best, at, tf.where(keep[:, None, None, None], x_new, best_t))
                    return q + 1, x_best, margin, loss

                _, x_best, margin, loss = tf.while_loop(
                    more, query, (tf.constant(first), x_best, margin, loss))
            return x_best, margin <= 0

        def attack(x0, labels, seed):
            margin, _ = scores(x0, labels)
            broken = margin <= 0  # already misclassified (or on target): not attacked
            x_out = x0
            for r in range(p.restarts):
                todo = tf.where(tf.logical_not(broken))[:, 0]
                adv, hit = search(tf.gather(x0, todo), tf.gather(labels, todo), randomness.draw(seed, r), todo)
                x_out = tf.tensor_scatter_nd_update(x_out, todo[:, None], adv)
                broken = tf.tensor_scatter_nd_update(broken, todo[:, None], hit)
            return x_out

        return attack


def _at_window(block, vh, vw, h: int, w: int):
    """An (1 or n, s, s, 1 or C) block placed at rows vh.., columns vw.. of an (n, h, w, .) zero image."""
    s = block.shape[1]
    n = tf.shape(vh)[0]
    block = tf.broadcast_to(block, tf.concat([[n], tf.shape(block)[1:]], 0))
    rel_h = tf.clip_by_value(tf.range(h)[None, :] - vh[:, None], 0, s - 1)
    rel_w = tf.clip_by_value(tf.range(w)[None, :] - vw[:, None], 0, s - 1)
    full = tf.gather(tf.gather(block, rel_h, axis=1, batch_dims=1), rel_w, axis=2, batch_dims=1)
    inside_h = tf.logical_and(tf.range(h)[None, :] >= vh[:, None], tf.range(h)[None, :] < vh[:, None] + s)
    inside_w = tf.logical_and(tf.range(w)[None, :] >= vw[:, None], tf.range(w)[None, :] < vw[:, None] + s)
    inside = tf.logical_and(inside_h[:, :, None, None], inside_w[:, None, :, None])
    return full * tf.cast(inside, full.dtype)


def _rings(rows: int, cols: int, norm: str) -> np.ndarray:
    """Concentric rectangles around the centre, each adding 1/(k+1)^2 (L2) or 1/(k+1)^4 (L1),
    of unit norm."""
    power = 4 if norm == "1" else 2
    out = np.zeros((rows, cols))
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        out[max(top, 0):min(top + 2 * k + 1, rows), max(left, 0):min(left + 2 * k + 1, cols)] += 1.0 / (k + 1) ** power
        top, left = top - 1, left - 1
    return out / _size(out, norm)


def _eta(s: int, norm: str) -> np.ndarray:
    """The update pattern of side s: rings of one sign on the top half, the other below."""
    out = np.zeros((s, s))
    out[: s // 2] = _rings(s // 2, s, norm) if s // 2 else 0.0
    out[s // 2 :] = -_rings(s - s // 2, s, norm)
    return out / _size(out, norm)


def _size(a: np.ndarray, norm: str) -> float:
    return float(np.abs(a).sum()) if norm == "1" else float(np.sqrt((a**2).sum()))


@hookimpl
def egide_register_attacks(register):
    register(Square)
