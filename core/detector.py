"""Detector: the base class of adversarial-input detectors.

`fit` learns from clean data (and adversarial examples for supervised detectors) and fixes the
decision threshold at the target false-positive rate; `score` is higher for inputs more likely
adversarial; `detect` compares scores with that threshold.

A plugin implements `_fit`, `_score`, and for saving `_state()` (a dict of NumPy arrays) and
`_load_state(clf, state)`. For attackers who know the detector (adaptive attacks) it may also
implement `_differentiable_score(clf)`: the same score as a TensorFlow function of the images,
and declare in `score_gradient` how its gradient is had ("exact", or the approximation used).
`save(path)` writes one `.npz` file holding that state plus a JSON header: plugin name, version,
params, threshold and the fingerprint of the model it was fitted on, so loading it against
another model is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from .classifier import Classifier
from .errors import InputError
from .plugin import Plugin

FORMAT = "egide-detector/1"


class Detector(Plugin):
    kind = "detector"
    supervised = False  # True when fit() needs adversarial examples

    threshold: float | None = None
    fitted_on: dict | None = None  # fingerprint(clf) of the model it was fitted on
    # How differentiable_score's gradient is had, said in reports: "exact", or a sentence that
    # names the approximation (BPDA ...). None: no differentiable score; adaptive attacks then
    # go through a surrogate, and the report says so.
    score_gradient: ClassVar[str | None] = None

    @classmethod
    def check_declaration(cls) -> None:
        super().check_declaration()
        implements = cls._differentiable_score is not Detector._differentiable_score
        if (cls.score_gradient is not None) != implements:
            raise TypeError(f"{cls.__name__}: declare score_gradient exactly when implementing "
                            "_differentiable_score (both or neither)")

    # ---- the public API ----------------------------------------------------------------
    def fit(self, clf: Classifier, x_clean, x_adv=None) -> "Detector":
        self.check_rank(clf)
        x_clean = clf.check_inputs(x_clean, "clean images")
        if self.supervised and x_adv is None:
            raise InputError(
                f"{self.name} is supervised: fit it with adversarial examples too, "
                "det.fit(clf, x_clean, x_adv)"
            )
        if x_adv is not None:
            x_adv = clf.check_inputs(x_adv, "adversarial images")
        self._fit(clf, x_clean, x_adv)
        self.fitted_on = fingerprint(clf)
        # The threshold leaves a fraction `fpr` of the clean scores above it.
        scores = np.asarray(self._score(clf, x_clean), np.float64)
        self.threshold = float(np.quantile(scores, 1.0 - self.fpr))
        return self

    @property
    def fpr(self) -> float:
        return float(getattr(self.params, "fpr", 0.05))

    def score(self, clf: Classifier, x) -> np.ndarray:
        self._check_fitted(clf)
        return np.asarray(self._score(clf, clf.check_inputs(x)), np.float64)

    def detect(self, clf: Classifier, x) -> np.ndarray:
        return self.score(clf, x) > self.threshold

    def differentiable_score(self, clf: Classifier):
        """The score as a TensorFlow function of a batch of images in [0, 1], (B, H, W, C) ->
        (B,), safe inside a tf.function and differentiable (see `score_gradient`): its values
        are score()'s, so `fn(x) > threshold` is detect(). None when the detector has none."""
        self._check_fitted(clf)
        return None if self.score_gradient is None else self._differentiable_score(clf)

    def _check_fitted(self, clf: Classifier) -> None:
        if self.threshold is None:
            raise InputError(f"{self.name}: fit the detector before scoring (det.fit(clf, x_clean))")
        fitted = self.fitted_on or {}
        if fitted and (list(clf.input_shape) != fitted.get("input_shape")
                       or clf.num_classes != fitted.get("num_classes")):
            raise InputError(
                f"{self.name}: fitted on a model with input {tuple(fitted['input_shape'])} and "
                f"{fitted['num_classes']} classes, but this one has input {clf.input_shape} and "
                f"{clf.num_classes} classes; fit the detector on this model"
            )

    # ---- saving ------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write the fitted detector to one `.npz` file, atomically."""
        if self.threshold is None:
            raise InputError(f"{self.name}: fit the detector before saving it")
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"{path}: save detectors as .npz")
        header = {
            "format": FORMAT,
            **self.config(),
            "threshold": self.threshold,
            "fitted_on": self.fitted_on,
        }
        arrays = {f"state/{k}": np.asarray(v) for k, v in self._state().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.npz")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, header=np.array(json.dumps(header)), **arrays)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} must implement _state() to be saved")

    def _load_state(self, clf: Classifier, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _load_state() to be loaded")

    # ---- what a plugin implements -------------------------------------------------------
    def _fit(self, clf: Classifier, x_clean: np.ndarray, x_adv: np.ndarray | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit()")

    def _score(self, clf: Classifier, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _score()")

    def _differentiable_score(self, clf: Classifier):
        raise NotImplementedError(f"{type(self).__name__} declares no differentiable score")


def load_detector(path, clf: Classifier, registry=None) -> Detector:
    """Load a detector saved with `det.save(path)`, for the model `clf` it was fitted on."""
    from .registry import registry as default_registry

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such detector file")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            state = {k[len("state/"):]: data[k] for k in data.files if k.startswith("state/")}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: not a saved egide detector ({exc})") from None
    if header.get("format") != FORMAT:
        raise InputError(f"{path}: not a saved egide detector (format {header.get('format')!r})")
    reg = registry or default_registry()
    det = reg.create("detector", header["plugin"], **header["params"])
    if header.get("version") != det.version:
        import logging

        logging.getLogger("egide").warning(
            "%s: saved by %s %s, loaded with version %s", path, header["plugin"],
            header.get("version"), det.version)
    here = fingerprint(clf)
    if header.get("fitted_on") != here:
        raise InputError(
            f"{path}: this {header['plugin']} detector was fitted on another model "
            f"({_describe(header.get('fitted_on'))}); this model is {_describe(here)}. "
            "Fit the detector on this model."
        )
    det._load_state(clf, state)
    det.threshold = float(header["threshold"])
    det.fitted_on = here
    return det


def fingerprint(clf: Classifier) -> dict:
    """What identifies a model: its input shape, classes and a hash of its weights."""
    digest = hashlib.sha256()
    for w in clf.model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    info = {
        "input_shape": list(clf.input_shape),
        "num_classes": clf.num_classes,
        "weights_sha256": digest.hexdigest()[:16],
    }
    defense = getattr(clf, "defense", None)
    if defense is not None:  # a preprocessed classifier: the defense is part of the model
        info["defense"] = defense.config()
    return info


def _describe(fp: dict | None) -> str:
    if not fp:
        return "unknown"
    return (f"input {tuple(fp['input_shape'])}, {fp['num_classes']} classes, weights "
            f"{fp['weights_sha256']}")
