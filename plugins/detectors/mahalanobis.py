"""Mahalanobis detector (Lee, Lee, Lee & Shin, NeurIPS 2018).

At each of several hidden layers the features f_l(x) (feature maps averaged over space) are
modelled as class-conditional Gaussians with one shared (tied) covariance, fitted on clean data:
mu_c = mean of class c, Sigma = (1/N) sum_c sum_{i in c} (f_i - mu_c)(f_i - mu_c)^T, inverted
with a pseudo-inverse (dead ReLU channels make Sigma singular). The paper's confidence score is
M_l(x) = max_c -(f_l(x) - mu_c)^T Sigma^-1 (f_l(x) - mu_c); here the layer score is its negative,
the squared Mahalanobis distance to the closest class, so that higher means more adversarial.

Input pre-processing (the paper's eq. 4): before scoring layer l, the input is moved by a small
step against the gradient of the distance to the closest class,
x_hat = x - noise_magnitude * sign(grad_x (f_l(x) - mu_c^)^T Sigma^-1 (f_l(x) - mu_c^)),
which raises the confidence of clean inputs more than that of adversarial ones; the layer score
is then the distance to the closest class at x_hat. The paper picks the magnitude from a grid
that includes 0 using adversarial validation data. Without such data the default is 0 (the step
off, and every layer read in one forward pass): on the brain-MRI demo at eps = 4/255 each
magnitude tried (0.0005 and 0.002 on the validation split, 0.0002 to 0.01 on the test split)
lowered the AUC against FGSM, PGD, BIM and MIM, and more so the larger it was — the step is of
the same order as the attack's own perturbation there.

Combining the layers. The paper fits a logistic regression on the layer scores of clean and
adversarial validation data. That needs adversarial examples, which this detector does not
require, so the default is unsupervised: each layer score is standardised by its mean and
standard deviation on the clean fit data, and `combine="max"` takes the largest z-score (an
input far from every class at any one layer is flagged); `combine="sum"` adds them instead,
every layer weighing the same. On the demo's validation split "max" was the better of the two
against FGSM and PGD and equal within 0.01 on BIM and MIM. `combine="logistic"` is the paper's
supervised mode: fit with `det.fit(clf, x_clean, x_adv)` and the standardised layer scores feed
a logistic regression trained to tell clean (0) from adversarial (1) inputs; the score is its
log-odds.

Classes: `fit` receives no labels, so each clean image belongs to the class the model predicts
for it (on training data the model is nearly always right, so this matches the labels the paper
uses). A class the model never predicts on the fit data has no Gaussian and is not a candidate.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from egide.core import Detector, InputError, hookimpl
from egide.plugins.detectors._nets import run_batches
from egide.core.features import extract, feature_function, feature_layers

BATCH = 256


class Mahalanobis(Detector):
    """Distance to the closest class-conditional Gaussian (tied covariance) at several layers."""

    name = "mahalanobis"
    title = "Mahalanobis distance (Lee et al. 2018)"

    class Params(BaseModel, extra="forbid", frozen=True):
        layers: str = Field(
            "", description="Comma-separated names of the hidden layers to read; empty: every "
            "hidden layer that carries a representation (convolutions, poolings, dense)")
        noise_magnitude: float = Field(
            0.0, ge=0, le=1, description="Size of the input pre-processing step, in input "
            "units (the paper picks it from 0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01 on "
            "validation data); 0 turns the step off")
        combine: Literal["sum", "max", "logistic"] = Field(
            "max", description="How the layer scores are combined: sum or max of their z-scores "
            "on clean data (unsupervised), or a logistic regression fitted on clean and "
            "adversarial examples (supervised)")
        fpr: float = Field(
            0.05, gt=0, lt=1, description="Target false-positive rate on the clean fit data")

    # ---- fitting ---------------------------------------------------------------------------
    def _layers(self, clf) -> list[str]:
        if not self.params.layers.strip():
            return feature_layers(clf)
        names = [n.strip() for n in self.params.layers.split(",") if n.strip()]
        known = feature_layers(clf)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InputError(
                f"mahalanobis: no hidden layer named {', '.join(map(repr, unknown))} in "
                f"{clf.name}; layers available: {', '.join(known)}")
        return names

    def _fit(self, clf, x_clean, x_adv):
        if self.params.combine == "logistic" and x_adv is None:
            raise InputError(
                "mahalanobis with combine='logistic' is supervised: fit it with adversarial "
                "examples too, det.fit(clf, x_clean, x_adv), or use combine='max' or 'sum'")
        layers = self._layers(clf)
        labels = clf.predict(x_clean)
        self.classes = np.unique(labels)
        self.layer_names = layers
        self.means, self.precisions = [], []
        for f in extract(clf, x_clean, layers, pool=True):
            f = f.astype(np.float64)
            means = np.stack([f[labels == c].mean(axis=0) for c in self.classes])
            centred = f - means[np.searchsorted(self.classes, labels)]
            covariance = centred.T @ centred / len(f)
            self.means.append(means.astype(np.float32))
            self.precisions.append(np.linalg.pinv(covariance, hermitian=True).astype(np.float32))
        self.forget_compiled()
        clean = self._layer_scores(clf, x_clean)
        self.z_mean = clean.mean(axis=0)
        sd = clean.std(axis=0)
        self.z_sd = np.where(sd > 0, sd, 1.0)  # a constant layer adds nothing, not a NaN
        self.lr_coef = self.lr_intercept = None
        if self.params.combine == "logistic":
            from sklearn.linear_model import LogisticRegression

            adv = self._layer_scores(clf, x_adv)
            z = (np.concatenate([clean, adv]) - self.z_mean) / self.z_sd
            target = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
            lr = LogisticRegression(max_iter=1000).fit(z, target)
            self.lr_coef, self.lr_intercept = lr.coef_[0], float(lr.intercept_[0])

    # ---- scoring ---------------------------------------------------------------------------
    def _score(self, clf, x):
        score = self.compiled(clf, lambda: self._differentiable_score(clf), "score")
        return run_batches(score, x, BATCH).astype(np.float64)

    # Through the input pre-processing too: its own gradient step is differentiated (second
    # order), with the sign of that step held fixed, as its derivative is zero almost everywhere.
    score_gradient = "exact"

    def _differentiable_score(self, clf):
        import tensorflow as tf

        layers = self._score_function(clf)
        mean, sd = tf.constant(self.z_mean, tf.float64), tf.constant(self.z_sd, tf.float64)
        combine = self.params.combine
        coef = None if self.lr_coef is None else tf.constant(self.lr_coef, tf.float64)

        def score(x):
            z = (tf.cast(layers(x), tf.float64) - mean) / sd
            if combine == "sum":
                return tf.reduce_sum(z, axis=1)
            if combine == "max":
                return tf.reduce_max(z, axis=1)
            return tf.linalg.matvec(z, coef) + self.lr_intercept

        return score

    def _layer_scores(self, clf, x) -> np.ndarray:
        """(N, layers): squared Mahalanobis distance to the closest class, after pre-processing."""
        fn = self.compiled(clf, lambda: self._score_function(clf))
        return run_batches(fn, x, BATCH).astype(np.float64)

    def _score_function(self, clf):
        import tensorflow as tf

        eps = self.params.noise_magnitude
        gaussians = [(tf.constant(mu), tf.constant(prec))
                     for mu, prec in zip(self.means, self.precisions)]

        def closest(f, mu, prec):  # (B, D) -> (B,) squared distance to the closest class mean
            diff = f[:, None, :] - mu[None]
            return tf.reduce_min(tf.einsum("bkd,de,bke->bk", diff, prec, diff), axis=1)

        if eps == 0:  # no pre-processing: every layer from one forward pass
            features = feature_function(clf, self.layer_names, pool=True)

            def score(x):
                return tf.stack([closest(f, mu, prec) for f, (mu, prec)
                                 in zip(features(x), gaussians)], axis=1)
        else:
            # One feature function per layer: each layer has its own pre-processed input, and
            # scoring layer l runs the model only up to l.
            per_layer = [feature_function(clf, [name], pool=True) for name in self.layer_names]

            def score(x):
                out = []
                for features, (mu, prec) in zip(per_layer, gaussians):
                    with tf.GradientTape(watch_accessed_variables=False) as tape:
                        tape.watch(x)
                        distance = closest(features(x)[0], mu, prec)
                    grad = tape.gradient(distance, x)  # per image: images are independent
                    out.append(closest(features(x - eps * tf.sign(grad))[0], mu, prec))
                return tf.stack(out, axis=1)

        return score

    # ---- saving ----------------------------------------------------------------------------
    def _state(self):
        state = {
            "layers": np.array(self.layer_names),
            "classes": self.classes,
            "z_mean": self.z_mean,
            "z_sd": self.z_sd,
        }
        for i, (mu, prec) in enumerate(zip(self.means, self.precisions)):
            state[f"mean_{i}"], state[f"precision_{i}"] = mu, prec
        if self.lr_coef is not None:
            state["lr_coef"], state["lr_intercept"] = self.lr_coef, np.array(self.lr_intercept)
        return state

    def _load_state(self, clf, state):
        self.layer_names = [str(n) for n in state["layers"]]
        self._layers_exist(clf)
        self.classes = state["classes"]
        self.z_mean, self.z_sd = state["z_mean"], state["z_sd"]
        self.means = [state[f"mean_{i}"] for i in range(len(self.layer_names))]
        self.precisions = [state[f"precision_{i}"] for i in range(len(self.layer_names))]
        self.lr_coef = state.get("lr_coef")
        self.lr_intercept = float(state["lr_intercept"]) if "lr_intercept" in state else None
        self.forget_compiled()

    def _layers_exist(self, clf):
        known = set(feature_layers(clf))
        missing = [n for n in self.layer_names if n not in known]
        if missing:
            raise InputError(f"mahalanobis: the saved detector reads layers {missing} that "
                             f"{clf.name} does not have; fit the detector on this model")


@hookimpl
def egide_register_detectors(register):
    register(Mahalanobis)
