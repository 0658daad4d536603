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

Volumes (N, D, H, W, C) get cubes instead of squares: the side is the cube root of p times the
voxel count, the L-inf start has stripes along the last axis, and the L2/L1 pattern is concentric
cubes, split in two halves of opposite sign across a random one of the three axes (the 2-D
pattern is split across a random one of its two, which is the reference's transposition).

Departures from the reference code, both toward the paper: the window and signs are drawn for
each image (the reference draws one window and one sign per batch and iteration), and a
window may sit at the last row and column.

Cost: one forward pass per query, on the samples still unbroken only.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl, randomness
from egide.core.norms import per_sample
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
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        return attack(x, labels, seed)

    def side(self, query: int, *sizes: int) -> int:
        """The square's (or cube's) side at a query (0-based), as the schedule sets it; sizes:
        the image's (H, W) or the volume's (D, H, W)."""
        p = self.params
        at = int(query / p.queries * 10000) if p.rescale_schedule else query
        halvings = sum(at > mark for mark in SCHEDULE)
        share = p.p_init / 2**halvings
        smallest = 1 if p.norm == "inf" else 3
        area = share * math.prod(sizes)
        s = max(int(round(math.sqrt(area) if len(sizes) == 2 else area ** (1 / len(sizes)))), smallest)
        if p.norm != "inf" and s % 2 == 0:
            s += 1
        return min(s, *sizes)

    # ---- the search ---------------------------------------------------------------------------
    def _attack_function(self, clf):
        p = self.params
        eps, targeted = p.eps, p.targeted
        lo, hi = clf.clip
        *sizes, c = clf.input_shape  # (H, W) of an image, (D, H, W) of a volume
        dims = len(sizes)  # 2 for images, 3 for volumes
        axes, spatial = list(range(1, dims + 2)), list(range(1, dims + 1))  # all of an image's axes; per channel
        # Stages: runs of queries with the same square side. One loop runs them all, reading its
        # stage's side (and L2/L1 patterns, padded to the largest side) from tables: one loop body
        # to trace and optimise, however many stages the budget spans.
        stages = []
        for q in range(p.queries):
            s = self.side(q, *sizes)
            if stages and stages[-1][1] == s:
                continue
            stages.append((q, s))
        stage_starts = tf.constant([first for first, _ in stages], tf.int32)
        stage_sides = tf.constant([s for _, s in stages], tf.int32)
        if p.norm != "inf":
            widest = max(s for _, s in stages)
            padded = np.zeros((len(stages), dims) + (widest,) * dims, np.float32)
            for k, (_, s) in enumerate(stages):
                padded[(k, slice(None)) + (slice(0, s),) * dims] = _eta(s, p.norm, dims)
            stage_patterns = tf.constant(padded)

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

        def place(s, seed, rows):
            """Per image (rows: its place in the batch): a random window of side s, as a boolean
            mask (n, H, W, 1) (or (n, D, H, W, 1)), and its offsets along each axis."""
            def offset(axis, room):
                u = randomness.for_rows(randomness.draw(seed, axis), rows)(randomness.uniform, [1])[:, 0]
                return tf.minimum(tf.cast(tf.floor(u * tf.cast(room, tf.float32)), tf.int32), room - 1)

            offsets = [offset(axis, size - s + 1) for axis, size in enumerate(sizes)]
            return _window_mask(offsets, s, sizes), offsets

        def signs(row_shape, seed, rows):
            return randomness.for_rows(seed, rows)(randomness.signs, row_shape)

        def linf_update(x0, x_best, s, seed, rows):
            mask, _ = place(s, randomness.draw(seed, 0), rows)
            window = 2.0 * eps * signs([1] * dims + [c], randomness.draw(seed, 1), rows)
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
            return tf.clip_by_value(x0 + eps * delta / (size(delta, axes) + _TINY), lo, hi)

        def mass_update(x0, x_best, s, patterns, seed, rows):
            delta = x_best - x0
            mask1, offsets = place(s, randomness.draw(seed, 0), rows)
            mask2, _ = place(s, randomness.draw(seed, 1), rows)
            m1, either = tf.cast(mask1, tf.float32), tf.cast(tf.logical_or(mask1, mask2), tf.float32)
            norm_image = size(delta, axes)
            norm_window1 = size(delta * m1, spatial)  # per channel
            norm_windows = size(delta * either, spatial)
            # The new window: a fresh +-eta pattern plus the old window's direction, rescaled to
            # carry the mass of both windows and what the budget has left. The pattern's split
            # runs across a random axis (in 2-D: transposed for half of the queries), per image.
            u = randomness.for_rows(randomness.draw(seed, 2), rows)(randomness.uniform, [1])[:, 0]
            split = tf.minimum(tf.cast(tf.floor(u * dims), tf.int32), dims - 1)
            eta = tf.gather(patterns, split)[..., None]
            fresh = _at_window(eta, s, offsets, sizes) * signs([1] * dims + [c], randomness.draw(seed, 3), rows)
            new = m1 * (fresh + delta / (norm_window1 + _TINY))
            if p.norm == "1":  # the reference's L1 rule (the projection below keeps the budget)
                mass = (tf.maximum(eps - norm_image, 0.0) / c + norm_windows) * c
            else:
                mass = tf.sqrt(tf.maximum(eps**2 - tf.square(norm_image), 0.0) / c + tf.square(norm_windows))
            new = new / (size(new, spatial) + _TINY) * mass
            return onto_budget(x0, delta * (1.0 - either) + new)

        def start(x0, seed, rows):
            if p.norm == "inf":  # stripes: one sign per column (and channel), the same down it
                return clip_linf(x0 + eps * signs([1] * (dims - 1) + [sizes[-1], c], seed, rows), x0)
            pattern, block, count = _start_layout(sizes, p.norm)
            # One sign per block (and channel), in one draw; every voxel takes its block's.
            drawn = signs([count, c], seed, rows)  # (n, blocks, C)
            delta = tf.gather(drawn, block, axis=1) * tf.constant(pattern)[None, ..., None]
            return onto_budget(x0, delta)

        def search(x0, labels, seed, batch_rows):
            """One search on the samples given (batch_rows: their places in the batch, whose
            images' own draws they use); returns (best point, broken)."""
            x_best = start(x0, randomness.draw(seed, 0), batch_rows)
            margin, loss = scores(x_best, labels)
            stage_seeds = tf.stack([randomness.draw(seed, k + 1) for k in range(len(stages))])

            def more(q, x_best, margin, loss):
                return tf.logical_and(q < p.queries, tf.reduce_any(margin > 0))

            def query(q, x_best, margin, loss):
                k = tf.reduce_sum(tf.cast(stage_starts <= q, tf.int32)) - 1  # the query's stage
                s = stage_sides[k]
                todo = tf.where(margin > 0)[:, 0]
                x0_t, best_t = tf.gather(x0, todo), tf.gather(x_best, todo)
                q_seed, rows = randomness.draw(stage_seeds[k], q), tf.gather(batch_rows, todo)
                if p.norm == "inf":
                    x_new = linf_update(x0_t, best_t, s, q_seed, rows)
                else:
                    x_new = mass_update(x0_t, best_t, s, stage_patterns[k], q_seed, rows)
                m_new, l_new = scores(x_new, tf.gather(labels, todo))
                lower = l_new < tf.gather(loss, todo)
                keep = tf.logical_or(lower, m_new <= 0)
                at = todo[:, None]
                loss = tf.tensor_scatter_nd_update(loss, at, tf.where(lower, l_new, tf.gather(loss, todo)))
                margin = tf.tensor_scatter_nd_update(margin, at, tf.where(keep, m_new, tf.gather(margin, todo)))
                x_best = tf.tensor_scatter_nd_update(x_best, at, tf.where(per_sample(keep, x_new), x_new, best_t))
                return q + 1, x_best, margin, loss

            _, x_best, margin, loss = tf.while_loop(more, query, (tf.constant(0), x_best, margin, loss))
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


def _window_mask(offsets, s, sizes):
    """(n, *sizes, 1) booleans: True inside the window of side s (an int or a scalar tensor)
    starting at `offsets` (one (n,) tensor per axis)."""
    k, inside = len(sizes), None
    for axis, (v, size) in enumerate(zip(offsets, sizes)):
        grid = tf.range(size)[None, :]
        here = tf.logical_and(grid >= v[:, None], grid < v[:, None] + s)
        here = tf.reshape(here, [-1] + [1] * axis + [size] + [1] * (k - axis - 1) + [1])
        inside = here if inside is None else tf.logical_and(inside, here)
    return inside


def _at_window(block, s, offsets, sizes):
    """The first s rows along each axis of a (1 or n, w, .., w, 1 or C) block (w >= s: a pattern
    padded to the widest side), placed at `offsets` (one (n,) tensor per axis) of an (n, *sizes, .)
    zero image."""
    full = tf.broadcast_to(block, tf.concat([[tf.shape(offsets[0])[0]], tf.shape(block)[1:]], 0))
    for axis, (v, size) in enumerate(zip(offsets, sizes), start=1):
        relative = tf.clip_by_value(tf.range(size)[None, :] - v[:, None], 0, s - 1)
        full = tf.gather(full, relative, axis=axis, batch_dims=1)
    return full * tf.cast(_window_mask(offsets, s, sizes), full.dtype)


def _start_layout(sizes, norm: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The L2/L1 start's grid: blocks of side s = sizes[0] // 5 from an offset that centres five of
    them, each holding the +-eta pattern. Returns the pattern value and the block index of every
    pixel (or voxel), and the number of blocks."""
    s = max(sizes[0] // 5, 1)
    top = (sizes[0] - 5 * s) // 2
    eta = _eta(s, norm, len(sizes))[0]
    pattern, block = np.zeros(sizes, np.float32), np.zeros(sizes, np.int32)
    blocks = list(itertools.product(*(range(size // s) for size in sizes)))
    for index, at in enumerate(blocks):
        region = tuple(slice(top + b * s, min(top + (b + 1) * s, size)) for b, size in zip(at, sizes))
        pattern[region] = eta[tuple(slice(0, r.stop - r.start) for r in region)]
        block[region] = index
    return pattern, block, len(blocks)


def _rings(shape: tuple, norm: str) -> np.ndarray:
    """Concentric boxes around the centre, each adding 1/(k+1)^2 (L2) or 1/(k+1)^4 (L1), of unit norm."""
    power = 4 if norm == "1" else 2
    out = np.zeros(shape)
    starts = [d // 2 for d in shape]
    for k in range(max(d // 2 + 1 for d in shape)):
        out[tuple(slice(max(a, 0), min(a + 2 * k + 1, d)) for a, d in zip(starts, shape))] += 1.0 / (k + 1) ** power
        starts = [a - 1 for a in starts]
    return out / _size(out, norm)


def _eta(s: int, norm: str, k: int = 2) -> np.ndarray:
    """The update patterns of side s in k dimensions: rings of one sign on one half, the other sign
    on the other half; one pattern per axis the halves are split across (k, s, .., s)."""
    rest = (s,) * (k - 1)
    out = np.zeros((s,) + rest)
    out[: s // 2] = _rings((s // 2,) + rest, norm) if s // 2 else 0.0
    out[s // 2 :] = -_rings((s - s // 2,) + rest, norm)
    out /= _size(out, norm)
    return np.stack([np.moveaxis(out, 0, axis) for axis in range(k)])


def _size(a: np.ndarray, norm: str) -> float:
    return float(np.abs(a).sum()) if norm == "1" else float(np.sqrt((a**2).sum()))


@hookimpl
def egide_register_attacks(register):
    register(Square)
