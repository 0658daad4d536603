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
    __version__,
    hookimpl,
    load_detector,
    registry,
)
from egide.core.dataset import Dataset
from egide.core.trainer import use_training_loop
from egide.lab.guard import Guard
from egide.lab.guard.evaluation import evaluate_guard
from egide.lab.training.trainer_loop import train as _train_a_trainer

# The composition root: the kernel's Trainer.apply runs the lab's training loop.
use_training_loop(_train_a_trainer)


__all__ = [
    "__version__",
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
    "evaluate_guard",
    "hookimpl",
    "load_detector",
    "registry",
]
