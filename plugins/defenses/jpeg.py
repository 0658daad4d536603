"""JPEG compression — a round trip through lossy JPEG before classification (Dziugaite, Ghahramani
& Roy 2016; Das et al. 2017; Guo et al., ICLR 2018).

Each image is encoded as a JPEG at `quality` and decoded again: the 8x8 DCT quantisation drops
the high-frequency detail where small adversarial perturbations live. JPEG works on 8-bit
pixels of 1 or 3 channels, so images are mapped from the classifier's range to [0, 1], rounded
to 8 bits by the codec, and mapped back.

Not differentiable (the codec has no gradient, and rounding would give zero anyway): the
adaptive attacker uses BPDA with the identity as the backward pass, as Athalye et al. (2018) did
to break it.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import InputError, Preprocessor, hookimpl


class JPEG(Preprocessor):
    """Compress and decompress every image as a JPEG of the given quality."""

    name = "jpeg"
    title = "JPEG compression"
    no_volumes = "JPEG codes 2-D pictures; a volume has no JPEG round trip (median-filter or bit-depth work on volumes)"

    class Params(BaseModel, extra="forbid", frozen=True):
        quality: int = Field(
            75, ge=1, le=100, description="JPEG quality, 1 (smallest file, most loss) to 100"
        )

    def transform(self, x, rng, clip):
        channels = x.shape[-1]
        if channels not in (1, 3):
            raise InputError(
                f"jpeg: JPEG stores images of 1 (grey) or 3 (RGB) channels; these have {channels}"
            )
        lo, hi = clip
        unit = (tf.clip_by_value(x, lo, hi) - lo) / (hi - lo)
        quality = self.params.quality
        # The codec takes one image at a time.
        squeezed = tf.map_fn(
            lambda image: tf.image.adjust_jpeg_quality(image, quality),
            unit,
            fn_output_signature=tf.TensorSpec(x.shape[1:], tf.float32),
        )
        return lo + tf.reshape(squeezed, tf.shape(x)) * (hi - lo)


@hookimpl
def egide_register_defenses(register):
    register(JPEG)
