"""Kernel density and Bayesian uncertainty (Feinman, Curtin, Shintre & Gardner, 2017).

Density. The last hidden layer's features of the clean fit images are kept, grouped by the class
the model predicts for them (fit receives no labels; on training data the prediction is nearly
always the label the paper uses). An input x predicted as class t gets the kernel density
    KDE(x) = 1/|X_t| sum_{x_i in X_t} exp(-||phi(x) - phi(x_i)||^2 / sigma^2)
(the paper's kernel, sigma = `bandwidth`). Adversarial examples land off the manifold of their
new class, where the density is low. A fit image is scored without itself (leave-one-out), so
the clean fit data — on which the threshold is set — scores as new clean data would. An input
whose predicted class has no other fit image is scored against all fit images instead.

Bandwidth. The paper tuned sigma per data set. With `bandwidth` empty it is chosen here without
adversarial data: the value on a log grid that maximises the leave-one-out likelihood of the
clean fit features (the normalised Gaussian kernel, in as many dimensions as features vary).

Uncertainty. With dropout left on at test time (MC dropout) the network is a sample from an
approximate posterior; over T = `mc_passes` samples
    U(x) = 1/T sum_t p_t^T p_t - (1/T sum_t p_t)^T (1/T sum_t p_t)
with p_t the softmax of pass t. The T dropout masks are drawn once (from `seed`) and shared by
every image, so scores are deterministic and do not depend on batching: each image is scored
by the same T sampled networks. Layers before the first dropout run once, not T times.
This needs a Sequential model with Dropout, SpatialDropout or GaussianDropout layers; otherwise
the score is the density alone, and `uses_uncertainty` / `uncertainty_note` say so.

Combining. The paper feeds -log KDE and U to a logistic regression trained on clean, noisy and
adversarial examples. This detector is unsupervised, so it adds the two z-scores, each
standardised by its mean and standard deviation on the clean fit data:
    score = (-log KDE(x) - m1) / s1 + (U(x) - m2) / s2
Both raise on adversarial inputs in the paper's measurements; weighing them equally is the
choice that needs no adversarial data. Without uncertainty the score is the first term alone.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from egide.core import Detector, InputError, hookimpl
from egide.plugins.detectors._nets import run_batches
from egide.core.features import extract, feature_function, penultimate_layer

BATCH = 64  # MC dropout multiplies the batch by mc_passes after the first dropout layer
_DROPOUTS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
             "GaussianDropout")
# Layers that act differently when training: MC dropout runs them in inference mode anyway,
# but a layer of this kind we do not know how to sample turns uncertainty off.
_UNSUPPORTED_NOISE = ("AlphaDropout",)


class KernelDensity(Detector):
    """Low density of last-hidden-layer features under the predicted class, plus MC-dropout
    uncertainty where the model has dropout."""

    name = "kernel-density"
    title = "Kernel density + Bayesian uncertainty (Feinman et al. 2017)"

    class Params(BaseModel, extra="forbid", frozen=True):
        bandwidth: float | None = Field(
            None, gt=0, le=1e6, description="Kernel width sigma in feature units; empty: chosen "
            "by leave-one-out likelihood of the clean fit features")
        mc_passes: int = Field(
            50, ge=2, le=1000, description="MC-dropout passes for the uncertainty (models with "
            "dropout only)")
        seed: int = Field(0, ge=0, description="Seed of the MC-dropout masks")
        fpr: float = Field(
            0.05, gt=0, lt=1, description="Target false-positive rate on the clean fit data")

    uses_uncertainty: bool = False
    uncertainty_note: str = "not fitted"

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, clf, x_clean, x_adv):
        self.layer = penultimate_layer(clf)
        [features] = extract(clf, x_clean, [self.layer], pool=False)
        self.train_features = features.astype(np.float32)
        self.train_labels = clf.predict(x_clean).astype(np.int64)
        self.sigma = float(self.params.bandwidth or choose_bandwidth(
            self.train_features, self.train_labels))
        self.masks, self.uncertainty_note = dropout_masks(clf, self.params.mc_passes,
                                                         self.params.seed)
        self.uses_uncertainty = self.masks is not None
        self.forget_compiled()
        raw = self._raw(clf, x_clean)
        self.z_mean = raw.mean(axis=0)
        sd = raw.std(axis=0)
        self.z_sd = np.where(sd > 0, sd, 1.0)

    # ---- scoring ---------------------------------------------------------------------------
    def _score(self, clf, x):
        score = self.compiled(clf, lambda: self._differentiable_score(clf), "score")
        return run_batches(score, x, BATCH).astype(np.float64)

    score_gradient = "exact"

    def _differentiable_score(self, clf):
        import tensorflow as tf

        raw = self._score_function(clf)
        mean, sd = tf.constant(self.z_mean, tf.float64), tf.constant(self.z_sd, tf.float64)
        return lambda x: tf.reduce_sum((raw(x) - mean) / sd, axis=1)

    def _raw(self, clf, x) -> np.ndarray:
        """(N, 1 or 2): -log KDE, and the MC-dropout uncertainty when used."""
        fn = self.compiled(clf, lambda: self._score_function(clf))
        return run_batches(fn, x, BATCH).astype(np.float64)

    def _score_function(self, clf):
        import tensorflow as tf

        features = feature_function(clf, [self.layer], pool=False)
        train = tf.constant(self.train_features, tf.float64)
        train_sq = tf.reduce_sum(train**2, axis=1)
        train_labels = tf.constant(self.train_labels)
        inv_sigma2 = 1.0 / self.sigma**2
        uncertainty = mc_uncertainty(clf, self.masks) if self.uses_uncertainty else None

        def score(x):
            f = tf.cast(features(x)[0], tf.float64)
            pred = tf.argmax(clf.logits(x), axis=1)
            f_sq = tf.reduce_sum(f**2, axis=1, keepdims=True)
            d2 = tf.maximum(f_sq + train_sq[None] - 2.0 * f @ tf.transpose(train), 0.0)
            # Leave-one-out: a fit image does not count itself (relative float64 tolerance).
            other = d2 > 1e-9 * (f_sq + train_sq[None])
            same = other & (train_labels[None] == pred[:, None])
            in_class = tf.reduce_sum(tf.cast(same, tf.float64), axis=1)
            keep = tf.where((in_class >= 1.0)[:, None], same, other)  # too few: all classes
            logits = tf.where(keep, -d2 * inv_sigma2, tf.constant(-np.inf, tf.float64))
            count = tf.reduce_sum(tf.cast(keep, tf.float64), axis=1)
            neg_log_kde = tf.math.log(count) - tf.reduce_logsumexp(logits, axis=1)
            if uncertainty is None:
                return neg_log_kde[:, None]
            return tf.stack([neg_log_kde, tf.cast(uncertainty(x), tf.float64)], axis=1)

        return score

    # ---- saving ----------------------------------------------------------------------------
    def _state(self):
        state = {
            "layer": np.array(self.layer),
            "train_features": self.train_features,
            "train_labels": self.train_labels,
            "sigma": np.array(self.sigma),
            "z_mean": self.z_mean,
            "z_sd": self.z_sd,
            "uncertainty_note": np.array(self.uncertainty_note),
        }
        for i, mask in enumerate(self.masks or []):
            state[f"mask_{i}"] = mask
        return state

    def _load_state(self, clf, state):
        self.layer = str(state["layer"])
        if self.layer != penultimate_layer(clf):
            raise InputError(f"kernel-density: saved for layer {self.layer!r}, but this model's "
                             f"last hidden layer is {penultimate_layer(clf)!r}")
        self.train_features, self.train_labels = state["train_features"], state["train_labels"]
        self.sigma = float(state["sigma"])
        self.z_mean, self.z_sd = state["z_mean"], state["z_sd"]
        self.uncertainty_note = str(state["uncertainty_note"])
        n_masks = sum(1 for k in state if k.startswith("mask_"))
        self.masks = [state[f"mask_{i}"] for i in range(n_masks)] or None
        self.uses_uncertainty = self.masks is not None
        self.forget_compiled()


# ---- the bandwidth --------------------------------------------------------------------------
def choose_bandwidth(features: np.ndarray, labels: np.ndarray, max_per_class: int = 1000) -> float:
    """The sigma of a log grid maximising the leave-one-out log-likelihood of the features
    under the per-class Gaussian KDE (kernel normalised in the dimensions that vary)."""
    from scipy.special import logsumexp

    f = features.astype(np.float64)
    dims = max(int((f.std(axis=0) > 0).sum()), 1)
    rng = np.random.default_rng(0)
    blocks = []
    for c in np.unique(labels):
        members = f[labels == c]
        if len(members) < 2:
            continue
        if len(members) > max_per_class:
            members = members[rng.choice(len(members), max_per_class, replace=False)]
        sq = (members**2).sum(axis=1)
        d2 = np.maximum(sq[:, None] + sq[None] - 2 * members @ members.T, 0.0)
        np.fill_diagonal(d2, np.inf)  # leave one out
        blocks.append(d2)
    if not blocks:
        raise InputError("kernel-density: no class has two clean fit images to choose the "
                         "bandwidth from; give more clean images or set `bandwidth`")
    finite = np.concatenate([b[np.isfinite(b)] for b in blocks])
    scale = float(np.sqrt(np.median(finite[finite > 0]))) if np.any(finite > 0) else 1.0
    grid = scale * np.geomspace(0.01, 3.0, 40)
    best, best_ll = grid[-1], -np.inf
    for sigma in grid:
        ll = 0.0
        for d2 in blocks:
            ll += np.sum(logsumexp(-d2 / sigma**2, axis=1) - np.log(len(d2) - 1))
        n = sum(len(b) for b in blocks)
        ll -= n * dims / 2 * np.log(np.pi * sigma**2)
        if ll > best_ll:
            best, best_ll = sigma, ll
    return float(best)


# ---- MC dropout -----------------------------------------------------------------------------
def dropout_masks(clf, passes: int, seed: int):
    """(masks, note): one (passes, *mask shape) array per dropout layer of a Sequential model,
    or (None, why not) when MC dropout does not apply to this model."""
    import keras

    model = clf.model
    kinds = [type(layer).__name__ for layer in model.layers]
    if not any(k in _DROPOUTS for k in kinds):
        return None, "the model has no dropout layer: the score is the kernel density alone"
    if not isinstance(model, keras.Sequential):
        return None, ("MC dropout is implemented for Sequential models: the score is the "
                      "kernel density alone")
    odd = [k for k in kinds if k in _UNSUPPORTED_NOISE]
    if odd:
        return None, f"MC dropout does not sample {odd[0]} layers: the score is the density alone"
    rng = np.random.default_rng(seed)
    masks = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in _DROPOUTS:
            continue
        shape = tuple(int(d) for d in layer.output.shape[1:])
        rate = float(layer.rate)
        if kind.startswith("SpatialDropout"):  # one draw per channel (channels last)
            shape = (1,) * (len(shape) - 1) + shape[-1:]
        elif kind == "Dropout" and layer.noise_shape is not None:
            shape = tuple(1 if n == 1 else s for n, s in zip(layer.noise_shape[1:], shape))
        if kind == "GaussianDropout":
            mask = 1.0 + np.sqrt(rate / (1.0 - rate)) * rng.standard_normal((passes, *shape))
        else:
            mask = (rng.random((passes, *shape)) >= rate) / (1.0 - rate)
        masks.append(mask.astype(np.float32))
    note = f"MC dropout over {passes} passes through {len(masks)} dropout layer(s)"
    return masks, note


def mc_uncertainty(clf, masks):
    """fn(x) -> (B,) Feinman's uncertainty U(x) over the fixed dropout masks."""
    import tensorflow as tf

    layers = clf.model.layers
    first = next(i for i, layer in enumerate(layers) if type(layer).__name__ in _DROPOUTS)
    consts = [tf.constant(m) for m in masks]
    passes = int(masks[0].shape[0])
    output_is_logits = clf.output_is_logits

    def uncertainty(x):
        batch = tf.shape(x)[0]
        h, k = clf.to_model_input(x), 0
        for i, layer in enumerate(layers):
            if type(layer).__name__ in _DROPOUTS:
                inner = tf.shape(h)[1:]
                if i == first:  # from here on each image runs `passes` times
                    h = tf.broadcast_to(h[None], tf.concat([[passes], tf.shape(h)], 0))
                else:
                    h = tf.reshape(h, tf.concat([[passes, batch], inner], 0))
                h = tf.reshape(h * consts[k][:, None], tf.concat([[passes * batch], inner], 0))
                k += 1
            else:
                h = layer(h, training=False)
        h = tf.cast(h, tf.float64)
        if h.shape[-1] == 1:  # one sigmoid output (or one logit): two classes
            q = tf.sigmoid(h) if output_is_logits else h
            p = tf.concat([1.0 - q, q], axis=1)
        elif output_is_logits:
            p = tf.nn.softmax(h)
        else:  # the model ends in a softmax (or another probability output)
            p = h / tf.reduce_sum(h, axis=1, keepdims=True)
        p = tf.reshape(p, (passes, batch, -1))
        # U = mean_t p_t.p_t - mean.mean, computed as the summed variance over passes (the same
        # quantity) so that confident predictions do not drown it in cancellation error.
        mean = tf.reduce_mean(p, axis=0)
        return tf.reduce_sum(tf.reduce_mean((p - mean[None]) ** 2, axis=0), axis=1)

    return uncertainty


@hookimpl
def egide_register_detectors(register):
    register(KernelDensity)
