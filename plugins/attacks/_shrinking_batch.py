"""A batch that shrinks as its samples are broken, for the iterative attacks' while loops.

A sample leaves the loop once broken, and its result is written to the full-size output at its
place in the batch (`pos`): every sample's steps are its own, so the others' results do not
change, and the work shrinks as the points fall. The loop's state holds the active samples under
"active" (first dimension varying) and everything else at a fixed shape.
"""

from __future__ import annotations

import tensorflow as tf


def where_true(mask):
    """The indices where a (B,) mask is true: with tf.gather, tf.boolean_mask's result, for a
    fraction of its ops (it builds about ten per call, which the while loops trace and run)."""
    return tf.where(mask)[:, 0]


def rows_of(state: dict, keep) -> dict:
    """The per-sample tensors of `state`, only the rows where `keep` is true. Most iterations
    break no sample: then the state is passed on as it is, not copied row by row."""
    def gathered():
        rows = where_true(keep)
        return {k: tf.gather(v, rows) for k, v in state.items()}

    return tf.cond(tf.reduce_all(keep), lambda: dict(state), gathered)


def write_rows(out: dict, pos, rows, values: dict) -> dict:
    """`out` with, at the batch places pos[rows], the given rows of each of `values`."""
    at = tf.gather(pos, rows)[:, None]
    return dict(out, **{k: tf.tensor_scatter_nd_update(out[k], at, tf.gather(v, rows)) for k, v in values.items()})


def loop_invariants(state: dict) -> dict:
    """tf.while_loop shape invariants: the active samples' first dimension varies, the rest not."""
    def fixed(t):
        return tf.TensorShape(None) if isinstance(t, tf.TensorArray) else t.shape

    return {k: ({n: tf.TensorShape([None, *t.shape[1:]]) for n, t in v.items()} if k == "active"
                else tf.nest.map_structure(fixed, v)) for k, v in state.items()}
