"""Does a scan look like the ones the model was made for? The out-of-distribution check of /predict.

A classifier answers something for any input: a random-noise image gets "meningioma 81.7%". Its
confidence cannot tell, so the check reads what the model itself sees:

- features: the model's penultimate layer (what its logits are computed from), averaged over
  space for a feature map;
- reference: held-out images of the model's data (its val split, else train, else all of it),
  split in two, stratified by class: one part to fit, one to set the threshold;
- fit: one Gaussian per class with a shared covariance (Ledoit-Wolf shrinkage, so a few hundred
  images suffice in a hundred dimensions), as in Lee et al. 2018's Mahalanobis score;
- distance: the Mahalanobis distance of an image's features to the nearest class mean;
- threshold: the 99th percentile of the distances of the calibration part (images the fit never
  saw), so about 1% of scans like the reference are flagged by chance.

A flag is a warning, not a verdict: the prediction is still given, with the distance and the
threshold it was compared to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egide.core.batch_relaxed import batch_relaxed_function
from egide.core.classifier import Classifier, batches
from egide.core.features import feature_function, penultimate_layer
from egide.lab.data.sampling import Draw

PERCENTILE = 99.0  # of the calibration distances: ~1% of in-distribution scans are flagged
CALIBRATION_SHARE = 0.25  # of the reference images, kept out of the fit to set the threshold
METHOD = ("Mahalanobis distance of the model's penultimate-layer features to the nearest class mean "
          "(shared Ledoit-Wolf covariance), against the 99th percentile of held-out reference scans")


@dataclass
class OutOfDistribution:
    """A fitted check: class means, the inverse shared covariance, and the threshold."""

    layer: str
    means: np.ndarray  # (K, D)
    precision: np.ndarray  # (D, D)
    threshold: float
    reference: dict  # where the reference images came from, and how many fitted / calibrated
    features: object = field(default=None, repr=False)  # the compiled feature pass, traced once

    @staticmethod
    def compiled_features(clf: Classifier, layer: str):
        """The model's features at `layer` as one tf.function: a /predict request reuses it
        (tracing it anew costs ~40 ms on the demo, ten times the request itself)."""
        pass_ = feature_function(clf, [layer])
        return batch_relaxed_function(lambda x: pass_(x)[0])

    @classmethod
    def fit(cls, clf: Classifier, x: np.ndarray, y: np.ndarray, reference: dict, seed: int = 0):
        from sklearn.covariance import LedoitWolf

        layer = penultimate_layer(clf)
        features = cls.compiled_features(clf, layer)
        feats = _run(features, x)
        names = [str(c) for c in range(int(y.max()) + 1)]
        calibration = Draw(max(1, int(len(y) * CALIBRATION_SHARE)), seed).indices(y, names)
        fitting = np.setdiff1d(np.arange(len(y)), calibration)
        classes = [c for c in np.unique(y[fitting])]
        means = np.stack([feats[fitting][y[fitting] == c].mean(0) for c in classes])
        centred = feats[fitting] - means[np.searchsorted(classes, y[fitting])]
        precision = LedoitWolf().fit(centred).precision_
        check = cls(layer, means, precision, 0.0, {**reference, "fitted": len(fitting),
                                                    "calibrated": len(calibration)}, features)
        check.threshold = float(np.percentile(check._distances(feats[calibration]), PERCENTILE))
        return check

    def distances(self, clf: Classifier, x: np.ndarray) -> np.ndarray:
        if self.features is None:
            self.features = self.compiled_features(clf, self.layer)
        return self._distances(_run(self.features, x))

    def _distances(self, feats: np.ndarray) -> np.ndarray:
        diff = feats[:, None, :] - self.means[None]  # (N, K, D)
        squared = np.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def describe(self) -> dict:
        return {"method": METHOD, "threshold": self.threshold, "reference": self.reference}


def _run(features, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import tensorflow as tf

    return np.concatenate([np.asarray(features(tf.constant(xb))) for xb in batches(x, batch_size)]).astype(np.float64)
