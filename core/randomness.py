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
    dims = tf.cast(tf.reduce_prod(tf.convert_to_tensor(shape)[1:]), tf.float32)
    radius = uniform(tf.stack([tf.convert_to_tensor(shape)[0], 1, 1, 1]), draw(seed, 1)) ** (1.0 / dims)
    return direction * radius * eps
