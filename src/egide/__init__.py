"""Égide: attack, defend and guard image classifiers.

    import egide
    reg = egide.registry()
    atk = reg.create("attack", "fgsm", eps=8/255)
    clf = egide.Classifier.from_keras(model, clip=(0.0, 1.0))
    res = atk.run(clf, x, y)
"""

from egide import datasets
from egide.core import (
    Attack,
    AttackResult,
    Classifier,
    Defense,
    Detector,
    EgideError,
    Plugin,
    Registry,
    hookimpl,
    __version__,
    load_detector,
    registry,
)
from egide.lab.guard import Guard
from egide.core.dataset import Dataset


__all__ = [
    "Attack",
    "AttackResult",
    "Classifier",
    "Dataset",
    "Defense",
    "Detector",
    "EgideError",
    "Guard",
    "Plugin",
    "Registry",
    "datasets",
    "hookimpl",
    "load_detector",
    "registry",
]
