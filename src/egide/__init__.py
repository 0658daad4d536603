"""Égide: attack, defend and guard image classifiers.

    import egide
    reg = egide.registry()
    atk = reg.create("attack", "fgsm", eps=8/255)
    clf = egide.Classifier.from_keras(model, clip=(0.0, 1.0))
    res = atk.run(clf, x, y)
"""

from importlib.metadata import PackageNotFoundError, version

from egide import datasets
from egide.core import (
    Attack,
    AttackResult,
    Classifier,
    Defense,
    Detector,
    EgideError,
    Guard,
    Plugin,
    Registry,
    hookimpl,
    load_detector,
    registry,
)
from egide.core.data import Dataset

try:
    __version__ = version("egide")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

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
