"""Per-sample norm primitives shared by attacks: normalise a direction, project onto a ball, and
the one projected-gradient step that every gradient attack and trainer takes.

All functions take and return batches of images (N, H, W, C) or volumes (N, D, H, W, C) and work
per sample, reducing over every axis but the first.
"""

import tensorflow as tf

_TINY = 1e-12


def sample_axes(t) -> list[int]:
    """The axes of one sample: all but the batch axis (the rank is static in every graph)."""
    return list(range(1, t.shape.rank))


def per_sample(v, like):
    """A value per sample (B,) shaped to broadcast against a batch like `like`."""
    return v[(...,) + (None,) * (like.shape.rank - 1)]


def per_sample_l2(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=sample_axes(t), keepdims=True))


def per_sample_l1(t):
    return tf.reduce_sum(tf.abs(t), axis=sample_axes(t), keepdims=True)


def steepest_direction(grad, norm: str):
    """The unit-norm ascent direction for a gradient: its sign (L-inf) or grad/||grad||_2 (L2)."""
    if norm == "inf":
        return tf.sign(grad)
    return grad / tf.maximum(per_sample_l2(grad), _TINY)


def project(delta, eps, norm: str):
    """Project perturbations onto the eps-ball of the given norm."""
    if norm == "inf":
        return tf.clip_by_value(delta, -eps, eps)
    scale = tf.minimum(1.0, eps / tf.maximum(per_sample_l2(delta), _TINY))
    return delta * scale


def clip_to_ball(x, x0, eps, norm: str, lo, hi):
    """Bring x back into the eps-ball around x0 (projection), then into the input range.

    Clipping after projecting never leaves the ball: x0 lies in [lo, hi], so clipping only moves
    coordinates towards x0 and can only shrink the perturbation, in either norm.
    """
    return tf.clip_by_value(x0 + project(x - x0, eps, norm), lo, hi)


def projected_gradient_step(x, x0, grad, step_size, eps, norm: str, lo, hi):
    """One step of size `step_size` along the steepest-ascent direction of `grad` (its sign for
    L-inf, grad/||grad||_2 for L2), then back into the eps-ball around x0 and the input range.
    Descend (targeted attacks) by passing the gradient of the negated loss."""
    return clip_to_ball(x + step_size * steepest_direction(grad, norm), x0, eps, norm, lo, hi)
