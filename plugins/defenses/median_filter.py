"""Median filter — feature squeezing's spatial-smoothing squeezer (Xu, Evans & Qi, NDSS 2018).

Every pixel becomes the median of the `size` x `size` window around it, channel by channel, with
scipy.ndimage.median_filter's conventions (egide.plugins.squeezers: the border reflected with the
edge pixel repeated; for an even count the upper of the two middle values). Isolated outliers
(salt and pepper, and the sparse high-amplitude changes some attacks make) vanish; edges survive.

Differentiable: yes, and marked so. A median selects one input value, so
locally it is the identity on the selected pixel and its gradient exists almost everywhere,
exactly as for max-pooling or ReLU. TensorFlow's sort gradient routes it to the selected pixel,
so an attacker differentiating the defended model already gets the true gradient: the
non-adaptive attack is the adaptive one, and BPDA would only make it worse.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import InputError, Preprocessor, hookimpl
from egide.plugins.squeezers import median, median_margins


class MedianFilter(Preprocessor):
    """Replace every pixel by the median of its window (scipy's conventions)."""

    name = "median-filter"
    title = "Median filter"
    differentiable = True

    class Params(BaseModel, extra="forbid", frozen=True):
        size: int = Field(
            3, ge=2, le=11, description="Width and height of the square window, in pixels"
        )

    def transform(self, x, rng, clip):
        k = self.params.size
        reach = max(median_margins(k))
        sides = x.shape[1:-1]  # (H, W), or (D, H, W) for volumes: a window^3 cube
        if None not in sides and reach > min(sides):
            raise InputError(
                f"median-filter: a window of {k} needs images of at least {reach} pixels a side "
                f"for its border; got {'x'.join(map(str, sides))}; use a smaller size"
            )
        return tf.clip_by_value(median(x, k), *clip)


@hookimpl
def egide_register_defenses(register):
    register(MedianFilter)
