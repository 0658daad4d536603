"""LID — Local Intrinsic Dimensionality (Ma et al., "Characterizing Adversarial Subspaces Using
Local Intrinsic Dimensionality", ICLR 2018).

Adversarial regions have a higher local intrinsic dimensionality than the data manifold. For
an input x and a reference set of clean images, at every hidden layer (flattened activations)
and the logits, the maximum-likelihood estimate with the k nearest reference neighbours
r_1 <= ... <= r_k is

    LID(x) = -( (1/k) * sum_i log(r_i / r_k) )^-1

One LID per layer is the feature vector; a logistic regression (on
standardised features) learns clean (and noisy) vs adversarial, and the score is its logit.

As in the paper, features are computed per minibatch of clean images: an example's neighbours
are the other `batch_size - 1` clean images of its minibatch (never itself, and for an
adversarial or noisy copy never its own source image). New inputs are scored against one
stored reference batch of `batch_size - 1` clean images, so fit and scoring use neighbour sets
of the same size.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import BaseModel, Field

from egide.core import Detector, InputError, hookimpl
from egide.core.features import feature_function, feature_layers

from . import _nets

log = logging.getLogger("egide")

_TINY = 1e-12


class LID(Detector):
    """Local intrinsic dimensionality of hidden activations, with a logistic regression on top."""

    name = "lid"
    title = "Local Intrinsic Dimensionality (Ma et al. 2018)"
    supervised = True

    class Params(BaseModel, extra="forbid", frozen=True):
        k: int = Field(20, ge=2, le=1000, description="Nearest neighbours in the LID estimate")
        batch_size: int = Field(
            300, ge=4, le=10000,
            description="Minibatch of clean images the neighbours come from (fewer clean images: "
            "all of them). The paper uses 100; 300 separated better on the brain-MRI demo",
        )
        noisy: bool = Field(
            True,
            description="Also fit on noisy clean copies (Gaussian noise of each adversarial "
            "perturbation's L2 size) as negatives, as in the paper",
        )
        layers: str = Field(
            "", description="Comma-separated layer names to read; empty = every hidden layer and the logits"
        )
        fpr: float = Field(0.05, gt=0, lt=1, description="Target false-positive rate on clean data")
        seed: int = Field(0, ge=0, description="Seed of the minibatch shuffle and the noise")

    # ---- fitting -----------------------------------------------------------------------
    def _fit(self, clf, x_clean, x_adv):
        from sklearn.linear_model import LogisticRegression

        m = self._minibatch(len(x_clean))
        rng = np.random.default_rng(self.params.seed)
        order = rng.permutation(len(x_clean))
        features, labels = self._training_features(clf, x_clean, x_adv, order, m, rng)
        self._mean = features.mean(axis=0)
        self._scale = np.where(features.std(axis=0) > 0, features.std(axis=0), 1.0)
        # A handful of standardised features: plain L2-regularised logistic regression (the
        # paper cross-validates C; with so few features it barely matters).
        regression = LogisticRegression(max_iter=1000)
        regression.fit((features - self._mean) / self._scale, labels)
        self._coef = regression.coef_[0].astype(np.float64)
        self._intercept = float(regression.intercept_[0])
        # New inputs are scored against one stored clean batch of m - 1 images.
        self._reference = x_clean[order[: m - 1]]
        self.forget_compiled()

    def _training_features(self, clf, x_clean, x_adv, order, m, rng):
        """LID features of the clean, adversarial (and noisy) images, minibatch by minibatch
        of the shuffled clean images, with labels 0 (clean, noisy) and 1 (adversarial)."""
        n = len(x_clean)
        # Each adversarial example joins the minibatch of its clean source, which must never be
        # its neighbour. Sources need not be given in order: an example's source is the clean
        # image nearest to it in input space (a perturbation is far smaller than the distance
        # between two different images).
        source = _nearest(x_adv, x_clean)
        sets = [(x_clean, np.arange(n)), (x_adv, source)]  # (images, index of each one's source)
        if self.params.noisy:
            sets.append((self._noisy(clf, x_clean[source], x_adv, rng), source))
        slot = np.empty(n, np.int64)
        slot[order] = np.arange(n)  # position of each clean image in the shuffled order
        parts = [[] for _ in sets]
        function = self._lid_function(clf)
        # The minibatches: consecutive slices of the shuffled data; the last one is moved back
        # to end at n, so it has m images too (only its images not yet featured are featured).
        for start in range(0, n, m):
            first = min(start, n - m)
            jobs = []
            for images, src in sets:
                rows = np.flatnonzero((slot[src] >= start) & (slot[src] < start + m))
                mask = np.ones((len(rows), m), bool)
                mask[np.arange(len(rows)), slot[src[rows]] - first] = False  # not its source
                jobs.append((images[rows], mask))
            for part, lids in zip(parts, function(x_clean[order[first:first + m]], jobs)):
                part.append(lids)
        clean, adversarial, *noisy = (np.concatenate(p) for p in parts)
        negatives = np.concatenate([clean, *noisy])
        labels = np.r_[np.zeros(len(negatives)), np.ones(len(adversarial))]
        return np.concatenate([negatives, adversarial]), labels

    def _minibatch(self, n: int) -> int:
        m = self.params.batch_size
        if n < m:
            log.info("lid: %d clean images, fewer than batch_size=%d: one minibatch of all", n, m)
            m = n
        if m < 4:  # k >= 2 neighbours among the m - 1 others, one of which may be the input
            raise InputError(f"lid needs at least 4 clean images to estimate LID, got {n}")
        return m

    def _k(self, references: int) -> int:
        """k, capped below the size of the reference set (a small fit set leaves fewer
        neighbours; one reference may be the scored image itself, which is left out)."""
        return min(self.params.k, references - 1)

    def _noisy(self, clf, x_clean, x_adv, rng):
        """Each source image plus Gaussian noise of its adversarial perturbation's L2 norm."""
        size = np.sqrt(((x_adv - x_clean) ** 2).reshape(len(x_clean), -1).sum(axis=1))
        noise = rng.standard_normal(x_clean.shape).astype(np.float32)
        scale = size / np.maximum(np.sqrt((noise ** 2).reshape(len(noise), -1).sum(axis=1)), _TINY)
        noise *= scale.reshape((-1,) + (1,) * (noise.ndim - 1)).astype(np.float32)
        return np.clip(x_clean + noise, *clf.clip).astype(np.float32)

    # ---- the estimate ------------------------------------------------------------------
    def _layer_names(self, clf) -> list[str]:
        names = [s.strip() for s in self.params.layers.split(",") if s.strip()]
        return names or feature_layers(clf)

    def _activations(self, clf):
        """fn(x) -> list of flattened activations: the chosen layers, or by default every
        hidden layer and then the logits."""
        from keras import ops

        inner = feature_function(clf, self._layer_names(clf), pool=False)
        read_logits = not self.params.layers.strip()

        def activations(x):
            out = inner(x)
            if read_logits:
                out = out + [ops.cast(clf.logits(x), "float32")]
            return out

        return activations

    def _lid_function(self, clf):
        """fn(references, [(x, mask), ...]) -> one (B, layers) array of LID estimates per x,
        where mask[i, j] says whether reference j may be a neighbour of x[i]."""
        import tensorflow as tf

        activations = tf.function(self._activations(clf), autograph=False)

        @tf.function(reduce_retracing=True, autograph=False)
        def lid(x, reference_activations, mask, k):
            return tf.stack([_mle(a, r, mask, k) for a, r in
                             zip(activations(x), reference_activations)], axis=1)

        def run(references, jobs):
            ref = activations(tf.constant(references))  # once for all the sets
            k = tf.constant(self._k(len(references) - 1))  # as many as when scoring
            return [np.asarray(lid(tf.constant(x), ref, tf.constant(mask), k), np.float64)
                    if len(x) else np.empty((0, len(ref))) for x, mask in jobs]

        return run

    # ---- scoring -----------------------------------------------------------------------
    def _score(self, clf, x):
        fn = self.compiled(clf, lambda: self._score_function(clf), autograph=False)
        return _nets.run_batches(fn, x)

    score_gradient = "exact"

    def _differentiable_score(self, clf):
        return self._score_function(clf)

    def _score_function(self, clf):
        import tensorflow as tf

        from egide.core.norms import sample_axes

        activations = self._activations(clf)
        # The reference activations are computed once, then held as constants of the graph.
        acts = tf.function(activations, autograph=False)
        chunks = [acts(tf.constant(self._reference[i:i + 256]))
                  for i in range(0, len(self._reference), 256)]
        references = [tf.concat(layer, axis=0) for layer in zip(*chunks)]
        k = tf.constant(self._k(len(self._reference)))
        flat_refs = tf.constant(self._reference.reshape(len(self._reference), -1))
        mean, scale = (tf.constant(v, tf.float64) for v in (self._mean, self._scale))
        coef, intercept = tf.constant(self._coef, tf.float64), self._intercept

        def score(x):
            # A reference identical to x is x itself (a clean image of the fit set, as when the
            # threshold is set): never its own neighbour, as in fitting.
            itself = _squared_distances(tf.reshape(x, (tf.shape(x)[0], -1)), flat_refs)
            norms = tf.reduce_sum(x ** 2, axis=sample_axes(x))[:, None] + tf.reduce_sum(flat_refs ** 2, 1)
            others = itself > 1e-6 * norms
            feats = tf.stack([_mle(a, r, others, k) for a, r in zip(activations(x), references)],
                             axis=1)
            z = (tf.cast(feats, tf.float64) - mean) / scale
            return tf.linalg.matvec(z, coef) + intercept

        return score

    # ---- saving ------------------------------------------------------------------------
    def _state(self):
        return {"reference": self._reference, "mean": self._mean, "scale": self._scale,
                "coef": self._coef, "intercept": np.array(self._intercept)}

    def _load_state(self, clf, state):
        self._reference = state["reference"].astype(np.float32)
        self._mean, self._scale = state["mean"], state["scale"]
        self._coef, self._intercept = state["coef"], float(state["intercept"])
        expected = len(self._layer_names(clf)) + (0 if self.params.layers.strip() else 1)
        if self._coef.shape != (expected,) or self._reference.shape[1:] != clf.input_shape:
            raise InputError("lid: the saved state does not match this model's layers or input; "
                             "fit the detector again")
        self.forget_compiled()


def _nearest(x, pool, chunk: int = 256) -> np.ndarray:
    """Index of the image of `pool` nearest to each image of `x` (L2, in input space)."""
    flat_pool = pool.reshape(len(pool), -1)
    norms = (flat_pool ** 2).sum(axis=1)
    out = []
    for i in range(0, len(x), chunk):
        flat = x[i:i + chunk].reshape(-1, flat_pool.shape[1])
        out.append(np.argmin(norms[None, :] - 2.0 * flat @ flat_pool.T, axis=1))
    return np.concatenate(out)


def _squared_distances(a, b):
    """(A, B) squared L2 distances between the rows of a and b, by one matrix product."""
    import tensorflow as tf

    return (tf.reduce_sum(a ** 2, axis=1, keepdims=True) - 2.0 * tf.matmul(a, b, transpose_b=True)
            + tf.reduce_sum(b ** 2, axis=1)[None, :])


def _mle(acts, refs, mask, k):
    """LID estimates of each row of `acts` (B, D) from its k nearest rows of `refs` (M, D)."""
    import tensorflow as tf

    d2 = tf.maximum(_squared_distances(acts, refs), _TINY)
    if mask is not None:
        d2 = tf.where(mask, d2, np.inf)
    nearest = -tf.math.top_k(-d2, k=k).values  # (B, k) squared distances, ascending
    # log(r_i / r_k) = log(d2_i / d2_k) / 2; the mean over i is negative (or 0 if all tie).
    mean_log = 0.5 * tf.reduce_mean(tf.math.log(nearest / nearest[:, -1:]), axis=1)
    return -1.0 / tf.minimum(mean_log, -_TINY)


@hookimpl
def egide_register_detectors(register):
    register(LID)
