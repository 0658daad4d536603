"""The squeezers of feature squeezing (Xu, Evans & Qi, NDSS 2018), in one home: the defenses
`bit-depth` and `median-filter` and the detector `feature-squeezing` all use these.

- Bit depth: each value rounded to the nearest of 2^bits evenly spaced levels over [lo, hi].
  `straight_through=True` differentiates the rounding as the identity (BPDA, Athalye et al.
  2018): the values are exact, the gradient is the one an attacker who knows the squeezer uses.
- Median: the convention of scipy.ndimage.median_filter, which the paper used (and which the
  tests compare against): the window of an even size covers the pixel and those before it; the
  border is mode "reflect" (the edge pixel repeated: TensorFlow's SYMMETRIC padding); for an even
  count, the upper of the two middle values (scipy's rank filter). It is exactly differentiable
  almost everywhere: the gradient goes to the selected pixel, as for max-pooling.
"""

import itertools

import tensorflow as tf


SORTING_NETWORK_LIMIT = 27  # up to a 3x3x3 cube: the sorting network; beyond it, tf.sort


def bit_depth(x, bits: int, lo: float, hi: float, straight_through: bool = False):
    """x (in [lo, hi]) rounded to 2^bits levels over the range."""
    levels = float(2**bits - 1)
    unit = (tf.clip_by_value(x, lo, hi) - lo) / (hi - lo) * levels
    rounded = _round_straight_through(unit) if straight_through else tf.round(unit)
    return lo + (hi - lo) * rounded / levels


def _round_straight_through(v):
    @tf.custom_gradient
    def rounded(t):
        return tf.round(t), lambda upstream: upstream

    return rounded(v)


def median_margins(window: int) -> tuple[int, int]:
    """Pixels the window reaches before and after the centre (scipy's placement)."""
    return window // 2, window - 1 - window // 2


def median(x, window: int):
    """The median over a window x window neighbourhood of each pixel and channel (NHWC), or over a
    window^3 cube of each voxel of a volume (NDHWC)."""
    before, after = median_margins(window)
    spatial = len(x.shape) - 2
    padded = tf.pad(x, [[0, 0]] + [[before, after]] * spatial + [[0, 0]], mode="SYMMETRIC")
    sizes = [tf.shape(x)[1 + a] for a in range(spatial)]
    values = [padded[(slice(None),) + tuple(slice(o, o + size) for o, size in zip(offset, sizes))]
              for offset in itertools.product(range(window), repeat=spatial)]
    n = len(values)
    if n > SORTING_NETWORK_LIMIT:  # a network of n^2 / 2 steps would be too large a graph
        return tf.sort(tf.stack(values, -1), axis=-1)[..., n // 2]
    # Sort the window's values pixel-wise with an odd-even transposition network: only
    # elementwise min/max, several times faster on CPU than tf.sort over extracted patches.
    for rnd in range(n):
        for i in range(rnd % 2, n - 1, 2):
            values[i], values[i + 1] = tf.minimum(values[i], values[i + 1]), tf.maximum(values[i], values[i + 1])
    return values[n // 2]  # the middle value; the upper of the two middle ones for an even count
