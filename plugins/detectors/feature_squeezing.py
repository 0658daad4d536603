"""Feature squeezing (Xu, Evans & Qi, NDSS 2018).

An adversarial perturbation is fragile: squeezing the input — fewer colour bits, a median
filter — removes much of it and moves the prediction, while a clean image's prediction barely
changes. The score is the largest L1 distance between the model's softmax on x and on each
squeezed copy of x:

    score(x) = max_s || softmax(f(x)) - softmax(f(s(x))) ||_1

Squeezers, as in the paper:
- bit-depth reduction to `bits` bits: round(u * (2^bits - 1)) / (2^bits - 1), u = x rescaled
  to [0, 1] from the classifier's range;
- median filter over a `median_window` x `median_window` window, per channel, reflecting at the
  border; for an even window the upper of the two middle values and the window reaching one
  pixel further up/left, exactly as scipy.ndimage.median_filter, which the paper used.

Unsupervised: fitting only sets the threshold at the target false-positive rate on clean data.
The paper's non-local-means squeezer is for colour images and is not included.

Defaults: the paper's 2x2 median filter, and 6 bits. On the brain-MRI demo at eps = 4/255, 3 or 4
bits squeeze clean grey-level images so much that their own predictions move (AUC about 0.8),
while 5 to 8 bits gave the same AUC within 0.005 on the validation split — there the median
filter does the detecting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from egide.core import Detector, hookimpl
from egide.plugins.detectors._nets import run_batches
from egide.plugins.squeezers import bit_depth, median

BATCH = 256


class FeatureSqueezing(Detector):
    """Largest L1 change of the softmax when the input is squeezed (bit depth, median filter)."""

    name = "feature-squeezing"
    title = "Feature squeezing (Xu et al. 2018)"

    class Params(BaseModel, extra="forbid", frozen=True):
        bits: int = Field(6, ge=1, le=16, description="Bit depth the bit-depth squeezer keeps")
        median_window: int = Field(
            2, ge=2, le=5, description="Side of the median filter's square window, in pixels")
        squeezers: Literal["both", "bit-depth", "median"] = Field(
            "both", description="Which squeezers to use; the score is the largest of their gaps")
        fpr: float = Field(
            0.05, gt=0, lt=1, description="Target false-positive rate on the clean fit data")

    def _squeezers(self, clf):
        p = self.params
        lo, hi = clf.clip
        chosen = []
        if p.squeezers in ("both", "bit-depth"):
            chosen.append(lambda x: bit_depth(x, p.bits, lo, hi, straight_through=True))
        if p.squeezers in ("both", "median"):
            chosen.append(lambda x: median(x, p.median_window))
        return chosen

    reads_only_outputs = True  # the model's softmax on squeezed inputs: any classifier will do
    score_gradient = ("BPDA: bit-depth rounding differentiated as the identity; the median "
                      "filter exactly (the gradient flows to the median pixel)")

    def _differentiable_score(self, clf):
        return self._score_function(clf)

    def _fit(self, clf, x_clean, x_adv):
        pass  # nothing to learn: the base class sets the threshold from the clean scores

    def _score(self, clf, x):
        return run_batches(self.compiled(clf, lambda: self._score_function(clf)), x, BATCH)

    def _score_function(self, clf):
        """Every squeezed copy runs in one model call."""
        import tensorflow as tf

        squeezers = self._squeezers(clf)

        def score(x):
            copies = tf.concat([x] + [s(x) for s in squeezers], axis=0)
            p = tf.nn.softmax(tf.cast(clf.logits(copies), tf.float32))
            p = tf.reshape(p, (len(squeezers) + 1, tf.shape(x)[0], -1))
            gaps = tf.reduce_sum(tf.abs(p[1:] - p[0]), axis=2)  # (squeezers, batch)
            return tf.reduce_max(gaps, axis=0)

        return score

    # Nothing is learnt but the threshold, which the saved header already holds.
    def _state(self):
        return {}

    def _load_state(self, clf, state):
        pass


@hookimpl
def egide_register_detectors(register):
    register(FeatureSqueezing)
