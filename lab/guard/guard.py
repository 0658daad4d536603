"""Guard: a classifier and a fitted detector, predicting and flagging in one call.

This is what a clinic would put in front of a model (and what `POST /api/v1/predict` serves):
every prediction comes with the detector's score and its verdict at the fitted threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egide.core.classifier import Classifier, softmax
from egide.core.detector import Detector
from egide.core.errors import InputError


@dataclass
class GuardedPrediction:
    labels: np.ndarray  # (N,) predicted class indices
    probabilities: np.ndarray  # (N, classes)
    scores: np.ndarray  # (N,) detector scores, higher = more likely adversarial
    flagged: np.ndarray  # (N,) bool: score above the detector's threshold
    threshold: float

    def to_dict(self, class_names: list[str] | None = None) -> list[dict]:
        rows = []
        for i, label in enumerate(self.labels):
            rows.append({
                "label": int(label),
                "class": class_names[label] if class_names else None,
                "confidence": float(self.probabilities[i, label]),
                "adversarial_score": float(self.scores[i]),
                "flagged": bool(self.flagged[i]),
            })
        return rows


class Guard:
    """`Guard(clf, detector)(x)` -> labels, probabilities, detector scores and flags."""

    def __init__(self, clf: Classifier, detector: Detector):
        if not isinstance(clf, Classifier):
            raise InputError(f"Guard needs an egide.Classifier, got {type(clf).__name__}")
        if not isinstance(detector, Detector):
            raise InputError(f"Guard needs an egide.Detector, got {type(detector).__name__}")
        detector._check_fitted(clf)  # a clear error now rather than at the first request
        self.clf = clf
        self.detector = detector

    def __call__(self, x, batch_size: int = 256) -> GuardedPrediction:
        x = self.clf.check_inputs(x)
        probabilities = softmax(self.clf.predict_logits(x, batch_size))
        scores = self.detector.score(self.clf, x)
        return GuardedPrediction(
            labels=probabilities.argmax(axis=1),
            probabilities=probabilities,
            scores=scores,
            flagged=scores > self.detector.threshold,
            threshold=float(self.detector.threshold),
        )
