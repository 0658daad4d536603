"""Preprocessing defenses: a classifier whose inputs are transformed before the model sees them.

A `Preprocessor` plugin implements `transform(x, rng)` in TensorFlow ops. `apply(clf)` returns a
`PreprocessedClassifier` — itself a `Classifier`, so every attack and detector works on it
unchanged. Attacked as it is, a quantiser or a JPEG round trip gives the attacker no gradient
(zero), and a random transform gives one draw's gradient: that is the *non-adaptive* number.

`defended.adaptive()` is the same defense seen by an adaptive attacker (Athalye et al. 2018):
- BPDA: the forward pass is the real transform, the backward pass that of `approximation(x)`
  (the identity unless the plugin knows better), so gradients flow through a step function;
- EOT: for a randomized transform, the logits are the log of the class probabilities averaged
  over `eot_samples` draws, so the gradient is that of the expected prediction.
Robust accuracy is always measured on the real defended classifier, whichever view was attacked.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .classifier import Classifier
from .defense import Defense


class Preprocessor(Defense):
    """Base of input-transforming defenses. Subclasses implement `transform`."""

    randomized: ClassVar[bool] = False  # draws noise on every call: attacked with EOT
    differentiable: ClassVar[bool] = False  # transform's own gradient is exact: BPDA not needed

    def transform(self, x, rng, clip: tuple[float, float]):
        """The transformed batch (float32 tensor, same shape, inside `clip`).

        x: float32 tensor (B, H, W, C), maybe k copies of the call's images; rng: their draws, per
        image (`normal`, `uniform` as on a `tf.random.Generator`; use it for all randomness, so a
        run reproduces under a seed in any batching); clip: the classifier's input range.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement transform()")

    def approximation(self, x, clip: tuple[float, float]):
        """BPDA's differentiable stand-in for `transform` (same shape, close in value)."""
        return x

    def defended_logits(self, clf: Classifier, x, rng):
        """The defended classifier's logits. Override when the defense is more than a transform
        (randomized smoothing votes over many noisy copies)."""
        import tensorflow as tf

        z = self.transform(x, rng, clf.clip)
        if not self.differentiable:
            z = tf.stop_gradient(z)  # what a non-adaptive attacker gets: no gradient at all
        return clf.logits(z)

    def adaptive_logits(self, clf: Classifier, x, rng, eot_samples: int):
        """Logits for an adaptive attacker: BPDA for the backward pass, EOT over the draws."""
        import tensorflow as tf

        draws = eot_samples if self.randomized else 1
        tiled = tf.tile(x, [draws] + [1] * (x.shape.rank - 1)) if draws > 1 else x
        z = self.transform(tiled, rng, clf.clip)
        if not self.differentiable:
            approx = self.approximation(tiled, clf.clip)
            z = approx + tf.stop_gradient(z - approx)
        logits = tf.cast(clf.logits(z), tf.float32)
        if draws == 1:
            return logits
        # log of the mean probability over draws: the expected prediction's logits (up to a
        # per-sample constant, which neither argmax nor cross-entropy sees).
        logp = tf.nn.log_softmax(tf.reshape(logits, [draws, -1, logits.shape[-1]]), axis=-1)
        return tf.reduce_logsumexp(logp, axis=0) - tf.math.log(float(draws))

    def apply(self, clf: Classifier, train=None, val=None, *, seed: int = 0) -> "PreprocessedClassifier":
        self.check_rank(clf)
        return PreprocessedClassifier(clf, self, seed=seed)


class PreprocessedClassifier(Classifier):
    """`base` behind `defense`'s input transform; `adaptive()` gives the attacker's view."""

    def __init__(self, base: Classifier, defense: Preprocessor, *, seed: int = 0,
                 adaptive: bool = False, eot_samples: int = 16):
        from .randomness import ImageNoise  # TensorFlow loads with the first defended model

        if not isinstance(base, Classifier):
            raise TypeError(f"{defense.name}: expected an egide.Classifier, got {type(base).__name__}")
        self.base = base
        self.defense = defense
        self.seed = int(seed)
        self.is_adaptive = bool(adaptive)
        self.eot_samples = int(eot_samples)
        # Shared by the Classifier API: the wrapped Keras model, range and name.
        self.model = base.model
        self.input_range, self.range_source = base.input_range, base.range_source
        self.name = f"{base.name}+{defense.name}"
        self._noise = ImageNoise(self.seed)
        if adaptive:
            view = "EOT" if defense.randomized else ("exact gradient" if defense.differentiable else "BPDA")
            self.logits_source = f"{base.logits_source}; behind {defense.name}, adaptive view ({view})"
            self._logits_fn = lambda x, rng: defense.adaptive_logits(base, x, rng, self.eot_samples)
        else:
            self.logits_source = f"{base.logits_source}; behind {defense.name}"
            self._logits_fn = lambda x, rng: defense.defended_logits(base, x, rng)

    def logits(self, x, training: bool = False):
        import tensorflow as tf

        x = tf.convert_to_tensor(x)  # base.logits maps [0, 1] to the model's range
        return self._logits_fn(x, self._noise.for_call(tf.shape(x)[0]))

    def predict_logits(self, x, batch_size: int | None = 256):
        """In chunks that draw as one call would: each image keeps its place in x, so a
        randomized defense's answer does not depend on batch_size."""
        x = self.check_inputs(x)
        size = batch_size or 256
        first, copies = self._noise.position()
        out = []
        for start in range(0, len(x), size):
            self._noise.place(first + start, copies)
            out.append(self._logits_np(x[start:start + size]))
        self._noise.place(first, self._noise.position()[1])
        return np.concatenate(out)

    def adaptive(self, eot_samples: int | None = None) -> "PreprocessedClassifier":
        """The classifier an adaptive attacker differentiates (BPDA / EOT). Attack this one, then
        measure robust accuracy on `self`."""
        return PreprocessedClassifier(
            self.base, self.defense, seed=self.seed, adaptive=True,
            eot_samples=self.eot_samples if eot_samples is None else eot_samples,
        )

    def reseed(self, seed: int, first_image: int = 0) -> None:
        """Restart the defense's draws: the next call's images are first_image, first_image + 1..."""
        self._noise.reseed(seed, first_image)

    def describe(self) -> dict:
        return {**super().describe(), "defense": self.defense.config(), "adaptive": self.is_adaptive}
