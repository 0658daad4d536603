"""Randomness per image: image i of a run draws from (seed, i), whatever batch it sits in.

An attack's `perturb` gets `seed`, int64 [stream, index in the run of the batch's first image];
every tensor of shape (B, ...) made here gives row k the values of image first + k alone: the
same in a batch of 7 or 128, here or on a Ray worker. Restarts and queries are other streams of
the same images, `draw(seed, r)`. How: Philox is counter based; image i's values start at counter
i * ceil(D / 4) (four values per step), so a batch is one contiguous stretch, made by one op.
"""

from __future__ import annotations

import tensorflow as tf

from .norms import per_sample_l2

PHILOX = 1  # tf.random.Algorithm.PHILOX
_PER_STEP = 4  # values per Philox counter step


def draw(seed, k):
    """The stream of draw k (a restart, a query) of `seed`, over the same images."""
    seed = tf.convert_to_tensor(seed, tf.int64)
    stream = tf.random.stateless_uniform([], tf.stack([seed[0], tf.cast(k, tf.int64)]), minval=None,
                                         maxval=None, dtype=tf.int64)
    return tf.stack([stream, seed[1]])


def draws(seed, count: int):
    """`count` streams at once: (count, 2), row r being draw(seed, r)."""
    return tf.stack([draw(seed, r) for r in range(count)])


def _rows(op, shape, seed):
    seed = tf.convert_to_tensor(seed, tf.int64)
    shape = tf.convert_to_tensor(shape, tf.int32)
    n = shape[0]
    d = tf.reduce_prod(shape[1:])
    steps = (d + _PER_STEP - 1) // _PER_STEP
    key, counter = tf.raw_ops.StatelessRandomGetKeyCounter(seed=tf.stack([seed[0], tf.constant(0, tf.int64)]))
    offset = tf.cast(seed[1], tf.uint64) * tf.cast(steps, tf.uint64)
    counter = counter + tf.stack([offset, tf.constant(0, tf.uint64)])
    values = op(shape=tf.expand_dims(n * steps * _PER_STEP, 0), key=key, counter=counter, alg=PHILOX)
    return tf.reshape(tf.reshape(values, [n, steps * _PER_STEP])[:, :d], shape)


def uniform(shape, seed, minval=0.0, maxval=1.0):
    """Uniform floats in [minval, maxval) of shape (B, ...): row k from image seed[1] + k."""
    u = _rows(tf.raw_ops.StatelessRandomUniformV2, shape, seed)
    return minval + (maxval - minval) * u


def normal(shape, seed):
    """Standard normal floats of shape (B, ...): row k from image seed[1] + k."""
    return _rows(tf.raw_ops.StatelessRandomNormalV2, shape, seed)


def signs(shape, seed):
    """+1 or -1, each with probability 1/2, of shape (B, ...) per image."""
    return tf.where(uniform(shape, seed) < 0.5, -1.0, 1.0)


def for_rows(seed, rows):
    """The draws of a subset of a batch (rows: indices into it): `pick(make, row_shape)` makes the
    stretch up to the last row with `make(shape, seed)`, then takes those rows."""
    rows = tf.cast(tf.convert_to_tensor(rows), tf.int32)

    def pick(make, row_shape):
        n = tf.reduce_max(tf.concat([rows, [-1]], 0)) + 1  # 0 for no rows
        full = make(tf.concat([[n], tf.convert_to_tensor(row_shape, tf.int32)], 0), seed)
        return tf.gather(full, rows)

    return pick


def in_ball(shape, eps, norm: str, seed):
    """Uniform samples from the eps-ball, per image (see `uniform`)."""
    if norm == "inf":
        return uniform(shape, draw(seed, 0), -eps, eps)
    direction = normal(shape, draw(seed, 0))
    direction = direction / tf.maximum(per_sample_l2(direction), 1e-12)
    shape = tf.convert_to_tensor(shape)
    dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = uniform(tf.concat([shape[:1], tf.ones_like(shape[1:])], 0), draw(seed, 1)) ** (1.0 / dims)
    return direction * radius * eps


class ImageNoise:
    """A randomized defense's draws, per image. A call's tensor of shape (k * n, ...), k copies of
    its n images, gets for row j copy c0 + j // n of image first + j % n, c0 counting the copies
    drawn since `reseed`: so image i's noise depends on (seed, i, how often it was drawn), never on
    the batch around it. Stands in for a `tf.random.Generator` (normal, uniform)."""

    def __init__(self, seed: int = 0):
        self._stream = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._first = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._copies = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.reseed(seed)

    def reseed(self, seed: int, first_image: int = 0) -> None:
        import numpy as np

        # Its own stream: the attack's random starts, drawn from `seed` itself, stay independent.
        self._stream.assign(int(np.random.SeedSequence([int(seed), 0xD1CE]).generate_state(1)[0]))
        self.place(first_image, 0)

    def place(self, first_image: int, copies: int) -> None:
        self._first.assign(int(first_image))
        self._copies.assign(int(copies))

    def position(self) -> tuple[int, int]:
        return int(self._first.numpy()), int(self._copies.numpy())

    def for_call(self, images) -> "_CallNoise":
        return _CallNoise(self, images)


class _CallNoise:
    """The draws of one call on `images` images (a Generator's normal and uniform)."""

    def __init__(self, noise: ImageNoise, images):
        self.noise, self.images = noise, tf.cast(images, tf.int32)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32):
        return tf.cast(mean + stddev * self._rows(normal, shape), dtype)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
        return tf.cast(minval + (maxval - minval) * self._rows(uniform, shape), dtype)

    def _rows(self, make, shape):
        shape = tf.convert_to_tensor(shape, tf.int32)
        n, rows = self.images, shape[0]
        k = tf.cast(rows // n, tf.int64)
        per_image = tf.logical_and(rows > 0, tf.equal(rows % n, 0))
        copies = tf.where(per_image, k, 1)
        c0 = self.noise._copies.assign_add(copies) - copies
        seed = tf.stack([self.noise._stream, self.noise._first])

        def by_image():
            one = tf.concat([[n], shape[1:]], 0)
            out = tf.map_fn(lambda c: make(one, draw(seed, c)), c0 + tf.range(k),
                            fn_output_signature=tf.float32)
            return tf.reshape(out, shape)

        # A tensor that is not copies of the images (one value per call...): one draw for all.
        return tf.cond(per_image, by_image, lambda: make(shape, draw(seed, c0)))
