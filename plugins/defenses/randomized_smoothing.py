"""Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019).

The smoothed classifier g(x) = argmax_c P(f(x + d) = c), d ~ N(0, sigma^2 I), predicts the class
the base classifier f picks most often under Gaussian noise. If that class has probability
pA >= 1/2, g is provably constant on the L2 ball of radius sigma * PHI^-1(pA) around x.

- Prediction (`defended.predict`): a vote over `samples` noisy copies. The logits are the log of
  the smoothed vote fractions, (votes + 1) / (samples + classes), finite even for classes no
  copy voted for. A vote has no gradient: that is what a non-adaptive attacker gets.
- Adaptive attack (`defended.adaptive()`): EOT over noisy copies of the soft classifier, the
  log of f's class probabilities averaged over draws — the base class's EOT view of `transform`.
- Certification (`certify`): Cohen et al.'s CERTIFY. `n0` copies choose the top class, `n` fresh
  copies count its votes, and a one-sided Clopper-Pearson bound at level 1 - alpha gives pA_lower;
  the radius is sigma * PHI^-1(pA_lower), or the prediction abstains (-1) if pA_lower < 1/2.
  With probability at least 1 - alpha per image, a non-abstaining answer is g's and is robust
  within the radius.

Noisy copies are clipped to the input range, as every transform must be. The guarantee still
holds: it is a theorem about any base classifier, and "clip, then f" is one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Classifier, InputError, PreprocessedClassifier, Preprocessor, hookimpl
from egide.core.batch_relaxed import batch_relaxed_function
from egide.core.classifier import batches

ABSTAIN = -1
VOTE_BATCH = 512  # noisy images per forward pass when voting


@dataclass(frozen=True)
class Certification:
    """Per image: the smoothed prediction (-1 = abstain) and its certified L2 radius."""

    label: np.ndarray  # int64 class index, or -1 where the vote is too split to certify
    radius: np.ndarray  # float L2 radius in input units; 0 where abstaining
    p_lower: np.ndarray  # Clopper-Pearson lower bound on the top class's probability
    sigma: float
    alpha: float
    n0: int
    n: int
    seed: int

    def certified_accuracy(self, y, radius: float = 0.0) -> float:
        """Fraction of images certified correct with a radius of at least `radius` (Cohen's
        certified test accuracy at that radius)."""
        y = np.asarray(y)
        return float(np.mean((self.label == y) & (self.radius >= radius)))


class RandomizedSmoothing(Preprocessor):
    """Vote over Gaussian-noise copies; certifies an L2 radius per image."""

    name = "randomized-smoothing"
    title = "Randomized smoothing"
    randomized = True
    differentiable = True  # the noise is additive: EOT differentiates the soft classifier exactly

    class Params(BaseModel, extra="forbid", frozen=True):
        sigma: float = Field(
            0.02, gt=0, le=1e3, description="Standard deviation of the noise, in input units"
        )
        samples: int = Field(
            100, ge=1, le=100_000, description="Noisy copies voting on each prediction"
        )

    def transform(self, x, rng, clip):
        noise = rng.normal(tf.shape(x), stddev=self.params.sigma, dtype=x.dtype)
        return tf.clip_by_value(x + noise, *clip)

    def defended_logits(self, clf, x, rng):
        votes = self.vote_counts(clf, tf.stop_gradient(x), self.params.samples, rng)
        total = float(self.params.samples + clf.num_classes)
        return tf.math.log((votes + 1.0) / total)

    def vote_counts(self, clf, x, samples, rng, batch_size: int = VOTE_BATCH):
        """(B, classes) float counts of f's predictions over `samples` noisy copies of each
        image, at most about `batch_size` images per forward pass."""
        images, classes = tf.shape(x)[0], clf.num_classes
        copies_per_pass = tf.maximum(1, batch_size // images)
        samples = tf.cast(samples, tf.int32)

        def more(done, counts):
            return done < samples

        def vote(done, counts):
            m = tf.minimum(copies_per_pass, samples - done)
            noisy = self.transform(tf.tile(x, tf.concat([[m], tf.ones([x.shape.rank - 1], tf.int32)], 0)), rng, clf.clip)
            pred = tf.argmax(clf.logits(noisy), axis=1, output_type=tf.int32)
            votes = tf.reduce_sum(tf.one_hot(tf.reshape(pred, [m, images]), classes), axis=0)
            return done + m, counts + votes

        start = (tf.constant(0), tf.zeros([images, classes], tf.float32))
        _, counts = tf.while_loop(more, vote, start)
        return counts

    def certify(
        self,
        clf: Classifier,
        x,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        seed: int = 0,
    ) -> Certification:
        """Cohen et al.'s CERTIFY for every image of `x`: predicted class or -1, and L2 radius.

        clf: the base classifier, or one defended by randomized smoothing (its base is used).
        n0 / n: noisy copies to choose the class / to bound its probability; alpha: the
        probability that a certificate is wrong; batch_size: noisy images per forward pass.
        """
        from scipy.stats import beta, norm

        base = self._base_classifier(clf)
        if not (isinstance(n0, int) and n0 >= 1 and isinstance(n, int) and n >= 1):
            raise InputError(
                f"{self.name}: n0 and n must be positive integers, got n0={n0!r}, n={n!r}"
            )
        if not 0 < alpha < 1:
            raise InputError(f"{self.name}: alpha must lie in (0, 1), got {alpha!r} (e.g. 0.001)")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise InputError(
                f"{self.name}: batch_size must be a positive integer, got {batch_size!r}"
            )
        x = base.check_inputs(x)
        rng = tf.random.Generator.from_seed(seed)
        counts = batch_relaxed_function(
            lambda xb, samples: self.vote_counts(base, xb, samples, rng, batch_size))

        labels, lower = [], []
        for xb in batches(x, batch_size):
            xb = tf.constant(xb)
            # Selection and estimation use independent draws, so the bound is not biased by
            # having chosen the class that looked best.
            guess = np.asarray(counts(xb, tf.constant(n0))).argmax(axis=1)
            votes = np.asarray(counts(xb, tf.constant(n)))[np.arange(len(guess)), guess]
            hits = np.rint(votes).astype(np.int64)
            # One-sided Clopper-Pearson lower bound: the alpha quantile of Beta(k, n - k + 1).
            p = np.where(hits > 0, beta.ppf(alpha, np.maximum(hits, 1), n - hits + 1), 0.0)
            labels.append(guess)
            lower.append(p)
        label, p_lower = np.concatenate(labels).astype(np.int64), np.concatenate(lower)
        certified = p_lower > 0.5
        radius = np.where(certified, self.params.sigma * norm.ppf(np.maximum(p_lower, 0.5)), 0.0)
        return Certification(
            label=np.where(certified, label, ABSTAIN),
            radius=radius.astype(np.float64),
            p_lower=p_lower,
            sigma=self.params.sigma,
            alpha=float(alpha),
            n0=n0,
            n=n,
            seed=seed,
        )

    def _base_classifier(self, clf) -> Classifier:
        if isinstance(clf, PreprocessedClassifier) and isinstance(clf.defense, RandomizedSmoothing):
            if clf.defense.params.sigma != self.params.sigma:
                raise InputError(
                    f"{self.name}: the classifier is smoothed with "
                    f"sigma={clf.defense.params.sigma} "
                    f"but this defense has sigma={self.params.sigma}; certify with the same "
                    "defense that made it, or pass the base classifier"
                )
            return clf.base
        if not isinstance(clf, Classifier):
            raise InputError(
                f"{self.name}: certify() needs an egide.Classifier, got {type(clf).__name__}"
            )
        return clf


@hookimpl
def egide_register_defenses(register):
    register(RandomizedSmoothing)
