"""Example third-party plugins for Égide: a random-noise attack and a max-softmax detector."""

from typing import Literal

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, Detector, hookimpl
from egide.core.norms import per_sample_l2


class RandomNoise(Attack):
    """Random sign noise of size eps: the baseline a gradient attack must beat."""

    name = "example-noise"
    title = "Random noise (example plugin)"

    class Params(BaseModel, extra="forbid"):
        eps: float = Field(8 / 255, gt=0, le=1000, description="Noise size, in input units")
        norm: Literal["inf", "2"] = Field("inf", description="Norm of the noise")

    def perturb(self, clf, x, y, target, seed):
        noise = tf.sign(tf.random.stateless_normal(tf.shape(x), seed))
        if self.params.norm == "2":
            noise = noise / per_sample_l2(noise)
        lo, hi = clf.clip
        return tf.clip_by_value(x + self.params.eps * noise, lo, hi)


class MaxSoftmax(Detector):
    """One minus the largest softmax probability (Hendrycks & Gimpel, ICLR 2017)."""

    name = "example-max-softmax"
    title = "Max softmax probability (example plugin)"

    class Params(BaseModel, extra="forbid"):
        fpr: float = Field(0.05, gt=0, lt=1, description="Target false-positive rate on clean data")

    def _fit(self, clf, x_clean, x_adv):
        pass  # nothing to learn beyond the threshold, which the base class sets

    def _score(self, clf, x):
        logits = clf.predict_logits(x)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return 1.0 - p.max(axis=1)

    # Nothing is learnt but the threshold, which the saved file's header holds.
    def _state(self):
        return {}

    def _load_state(self, clf, state):
        pass


@hookimpl
def egide_register_attacks(register):
    register(RandomNoise)


@hookimpl
def egide_register_detectors(register):
    register(MaxSoftmax)
