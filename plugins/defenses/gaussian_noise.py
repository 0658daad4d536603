"""Gaussian noise — fresh random noise added to every input before classification (the randomised
input defenses Athalye et al. 2018 broke with EOT).

x' = clip(x + sigma * N(0, I)) in the classifier's range, a new draw on every call. An attacker
who differentiates one call gets one draw's gradient, noisy and soon stale; the adaptive attacker
averages the prediction over many draws (EOT), which is what the defense really computes in
expectation. The transform is differentiable, so no BPDA is needed.
"""

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Preprocessor, hookimpl


class GaussianNoise(Preprocessor):
    """Add N(0, sigma^2) noise to every pixel, clipped to the input range."""

    name = "gaussian-noise"
    title = "Gaussian noise"
    randomized = True
    differentiable = True

    class Params(BaseModel, extra="forbid", frozen=True):
        sigma: float = Field(
            0.02, gt=0, le=1e3, description="Standard deviation of the noise, in input units"
        )

    def transform(self, x, rng, clip):
        noise = rng.normal(tf.shape(x), stddev=self.params.sigma, dtype=x.dtype)
        return tf.clip_by_value(x + noise, *clip)


@hookimpl
def egide_register_defenses(register):
    register(GaussianNoise)
