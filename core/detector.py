"""Detector: the base class of adversarial-input detectors.

`fit` learns from clean data (and adversarial examples for supervised detectors) and fixes the
decision threshold at the target false-positive rate; `score` is higher for inputs more likely
adversarial; `detect` compares scores with that threshold.
"""

from __future__ import annotations

import numpy as np

from .classifier import Classifier
from .errors import InputError
from .plugin import Plugin


class Detector(Plugin):
    kind = "detector"
    supervised = False  # True when fit() needs adversarial examples

    threshold: float | None = None

    def fit(self, clf: Classifier, x_clean, x_adv=None) -> "Detector":
        x_clean = clf.check_inputs(x_clean, "clean images")
        if self.supervised and x_adv is None:
            raise InputError(f"{self.name} is supervised: fit it with x_adv (adversarial examples)")
        if x_adv is not None:
            x_adv = clf.check_inputs(x_adv, "adversarial images")
        self._fit(clf, x_clean, x_adv)
        fpr = float(getattr(self.params, "fpr", 0.05))
        # The threshold leaves a fraction `fpr` of the clean scores above it.
        scores = np.asarray(self._score(clf, x_clean), np.float64)
        self.threshold = float(np.quantile(scores, 1.0 - fpr))
        return self

    def score(self, clf: Classifier, x) -> np.ndarray:
        if self.threshold is None:
            raise InputError(f"{self.name}: fit the detector before scoring (det.fit(clf, x_clean))")
        return np.asarray(self._score(clf, clf.check_inputs(x)), np.float64)

    def detect(self, clf: Classifier, x) -> np.ndarray:
        return self.score(clf, x) > self.threshold

    def _fit(self, clf: Classifier, x_clean: np.ndarray, x_adv: np.ndarray | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit()")

    def _score(self, clf: Classifier, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _score()")
