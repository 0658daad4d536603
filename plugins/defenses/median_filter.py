"""Median filter — feature squeezing's spatial-smoothing squeezer (Xu, Evans & Qi, NDSS 2018).

Every pixel becomes the median of the `size` x `size` window around it, channel by channel; the
border is padded by reflection about the edge pixel (not repeating it), so edges are smoothed
like the interior. Isolated outliers (salt and pepper, and the sparse high-amplitude changes
some attacks make) vanish; edges survive. For an even number of values the median is the mean
of the two middle ones.

Differentiable: yes, and marked so. A median selects one input value (or averages two), so
locally it is the identity on the selected pixel and its gradient exists almost everywhere,
exactly as for max-pooling or ReLU. TensorFlow's sort gradient routes it to the selected pixel,
so an attacker differentiating the defended model already gets the true gradient: the
non-adaptive attack is the adaptive one, and BPDA would only make it worse.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import InputError, Preprocessor, hookimpl


class MedianFilter(Preprocessor):
    """Replace every pixel by the median of its window (reflect padding)."""

    name = "median-filter"
    title = "Median filter"
    differentiable = True

    class Params(BaseModel, extra="forbid", frozen=True):
        size: int = Field(
            3, ge=2, le=11, description="Width and height of the square window, in pixels"
        )

    def transform(self, x, rng, clip):
        k = self.params.size
        before, after = (k - 1) // 2, k // 2  # an even window leans right/down, like scipy's
        height, width = x.shape[1], x.shape[2]
        if height is not None and width is not None and max(before, after) >= min(height, width):
            raise InputError(
                f"median-filter: a {k}x{k} window needs images larger than {max(before, after)} "
                f"pixels a side for reflect padding; got {height}x{width}; use a smaller size"
            )
        padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="REFLECT")
        rows, cols = tf.shape(x)[1], tf.shape(x)[2]
        # The k*k shifted copies of the image, stacked last: one window per pixel and channel.
        windows = tf.stack(
            [padded[:, i : i + rows, j : j + cols, :] for i in range(k) for j in range(k)], axis=-1
        )
        n = k * k
        # The n//2 + 1 largest values: the last is the median (odd n) or the upper of the two
        # middle values (even n), the one before it the lower.
        top = tf.math.top_k(windows, k=n // 2 + 1, sorted=True).values
        median = top[..., -1] if n % 2 else 0.5 * (top[..., -1] + top[..., -2])
        return tf.clip_by_value(median, *clip)


@hookimpl
def egide_register_defenses(register):
    register(MedianFilter)
