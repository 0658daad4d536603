"""MagNet's detectors (Meng & Chen, "MagNet: a Two-Pronged Defense against Adversarial
Examples", CCS 2017).

An autoencoder trained on clean images only learns the data manifold; inputs far from it are
reconstructed badly. Two of the paper's detectors are offered:

- reconstruction error: mean |x - AE(x)|^p over pixels, p = 1 or 2 (`norm`);
- probability divergence (`divergence=True`): the Jensen-Shannon divergence between the
  classifier's softmax at temperature T on x and on AE(x). It catches examples the
  autoencoder reconstructs closely but whose small change still moves the classifier.

MagNet flags an input when any of its detectors does, each thresholded at the same
false-positive rate on clean data. One score reproduces that union: each detector's score
becomes its tail probability among the clean fit scores (the fraction of clean images scoring
at least as high), and the score is -log of the smallest one. A threshold on it is then a
threshold on every detector at one common false-positive rate. (Standardising each score by
its clean mean and deviation and taking the maximum did worse here: the divergence is heavily
skewed, so equal z-scores are not equal false-positive rates.) Inputs beyond every clean fit
score share the top score, -log(1 / (n + 1)).

The autoencoder is the paper's MNIST "detector II" (and CIFAR-10) design: three 3x3
convolutions without pooling, a sigmoid output, trained with Adam on the mean squared error to
restore clean images from copies with Gaussian noise added (`train_noise`), as the authors' code
does. On the brain-MRI demo it beat the pooled "detector I" design (PGD AUC 0.81 vs 0.71): the
images' fine texture does not survive pooling, so the pooled reconstruction error on clean
images drowns a 4/255 perturbation. The hidden layers use ReLU where the paper uses sigmoids:
sigmoid layers learned almost nothing in the few hundred steps a fit may take.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from egide.core import Detector, hookimpl

from . import _nets


class MagNet(Detector):
    """Autoencoder reconstruction error, optionally with the probability-divergence detector."""

    name = "magnet"
    title = "MagNet autoencoder detector (Meng & Chen 2017)"

    class Params(BaseModel, extra="forbid", frozen=True):
        norm: Literal["1", "2"] = Field("1", description="Reconstruction error: L1 or L2 per pixel")
        divergence: bool = Field(
            True, description="Also use the Jensen-Shannon divergence of the classifier's "
            "softmax on x and on its reconstruction (flag when either detector does)",
        )
        temperature: float = Field(
            1.0, gt=0, le=1000,
            description="Softmax temperature T of the divergence (the paper uses 10 or 40 on "
            "CIFAR-10; 1 separated best on the brain-MRI demo)",
        )
        filters: int = Field(8, ge=1, le=256, description="Channels of the autoencoder's convolutions")
        steps: int = Field(
            300, ge=1, le=100_000,
            description="Adam updates of the autoencoder (about 11 passes over 1680 images), "
            "whatever the number of fit images",
        )
        batch_size: int = Field(64, ge=1, le=4096, description="Training minibatch size")
        learning_rate: float = Field(1e-3, gt=0, le=1, description="Adam learning rate")
        train_noise: float = Field(
            0.025, ge=0, le=1,
            description="Std of the Gaussian noise on training inputs, as a fraction of the input range",
        )
        fpr: float = Field(0.05, gt=0, lt=1, description="Target false-positive rate on clean data")
        seed: int = Field(0, ge=0, description="Seed of the weights, the shuffle and the noise")

    # ---- the autoencoder ---------------------------------------------------------------
    def _build(self, input_shape):
        import keras
        from keras import layers

        f, seed = self.params.filters, self.params.seed
        convolution = layers.Conv3D if len(input_shape) == 4 else layers.Conv2D  # volumes: 3x3x3

        def conv(channels, i, activation="relu"):
            return convolution(channels, 3, padding="same", activation=activation,
                                 kernel_initializer=_nets.initializer(seed + i))

        return keras.Sequential(
            [keras.Input(input_shape), conv(f, 0), conv(f, 1),
             conv(input_shape[-1], 2, activation="sigmoid")],
            name="magnet_autoencoder",
        )

    def _fit(self, clf, x_clean, x_adv):
        import keras

        lo, hi = clf.clip
        unit = (x_clean - lo) / (hi - lo)  # the autoencoder works in [0, 1] (sigmoid output)
        self._ae = self._build(clf.input_shape)
        sigma = self.params.train_noise

        def batch(idx, rng):
            target = unit[idx]
            noisy = np.clip(target + sigma * rng.standard_normal(target.shape, np.float32), 0, 1)
            return noisy, target

        _nets.train(self._ae, keras.losses.MeanSquaredError(), batch, len(unit),
                    steps=self.params.steps, batch_size=self.params.batch_size,
                    learning_rate=self.params.learning_rate, seed=self.params.seed)
        self.forget_compiled()
        # Each detector's clean fit scores, sorted: the reference for its tail probabilities.
        self._clean = np.sort(self._raw_scores(clf, x_clean), axis=0)

    # ---- scoring -----------------------------------------------------------------------
    def _raw_scores(self, clf, x) -> np.ndarray:
        """(N, 2): reconstruction error and divergence (0 when the divergence is off)."""
        fn = self.compiled(clf, lambda: self._score_function(clf), autograph=False)
        return _nets.run_batches(fn, x).astype(np.float64)

    def _score(self, clf, x):
        raw = self._raw_scores(clf, x)
        used = 2 if self.params.divergence else 1
        n = len(self._clean)
        # Tail probability: the share of clean fit scores >= the input's (+1 so it is never 0).
        tails = [(n - np.searchsorted(self._clean[:, j], raw[:, j], side="left") + 1) / (n + 1)
                 for j in range(used)]
        return -np.log(np.min(tails, axis=0))

    score_gradient = ("BPDA: the score's value is exact (tail probabilities among the clean fit "
                      "scores); its gradient is that of the largest standardised raw score")

    def _differentiable_score(self, clf):
        import tensorflow as tf

        raw_scores = self._score_function(clf)
        used = 2 if self.params.divergence else 1
        clean = tf.constant(self._clean[:, :used].T.copy(), tf.float64)  # (used, n), sorted
        n = float(len(self._clean))
        centre = tf.constant(np.median(self._clean[:, :used], axis=0), tf.float64)
        spread = self._clean[:, :used].std(axis=0)
        spread = tf.constant(np.where(spread > 0, spread, 1.0), tf.float64)

        def score(x):
            raw = tf.cast(raw_scores(x), tf.float64)[:, :used]  # (B, used)
            # As _score: the share of clean fit scores >= each raw score, +1 so never 0.
            below = tf.searchsorted(clean, tf.transpose(raw), side="left")  # (used, B)
            tails = (n - tf.cast(below, tf.float64) + 1.0) / (n + 1.0)
            exact = -tf.math.log(tf.reduce_min(tails, axis=0))
            # The tails are steps (zero gradient, and flat beyond every clean score): the
            # gradient is taken from the largest z-scored raw score, which rises with them.
            smooth = tf.reduce_max((raw - centre) / spread, axis=1)
            return smooth + tf.stop_gradient(exact - smooth)

        return score

    def _score_function(self, clf):
        import tensorflow as tf

        from egide.core.norms import sample_axes

        lo, hi = clf.clip
        power = float(self.params.norm)
        temperature = self.params.temperature
        divergence = self.params.divergence
        ae = self._ae

        def scores(x):
            unit = (x - lo) / (hi - lo)
            rebuilt = ae(unit, training=False)
            error = tf.reduce_mean(tf.abs(unit - rebuilt) ** power, axis=sample_axes(unit))
            if not divergence:
                return tf.stack([error, tf.zeros_like(error)], axis=1)
            p = tf.nn.softmax(clf.logits(x) / temperature)
            q = tf.nn.softmax(clf.logits(rebuilt * (hi - lo) + lo) / temperature)
            return tf.stack([error, _jensen_shannon(p, q)], axis=1)

        return scores

    # ---- saving ------------------------------------------------------------------------
    def _state(self):
        return {**_nets.weights_state(self._ae, "autoencoder"), "clean_scores": self._clean}

    def _load_state(self, clf, state):
        self._ae = self._build(clf.input_shape)
        _nets.load_weights(self._ae, state, "autoencoder")
        self._clean = state["clean_scores"]
        self.forget_compiled()


def _jensen_shannon(p, q):
    """JSD(p || q) per row, in nats; probabilities floored so log(0) never occurs."""
    import tensorflow as tf

    p, q = tf.maximum(p, 1e-12), tf.maximum(q, 1e-12)
    m = 0.5 * (p + q)
    return 0.5 * tf.reduce_sum(p * tf.math.log(p / m), 1) + 0.5 * tf.reduce_sum(q * tf.math.log(q / m), 1)


@hookimpl
def egide_register_detectors(register):
    register(MagNet)
