"""The Égide kernel: plugin contract, registry, classifier and data. No algorithm lives here."""

from .attack import Attack, Progress
from .classifier import Classifier
from .defense import Defense
from .detector import Detector, load_detector
from .guard import Guard, GuardedPrediction
from .preprocess import PreprocessedClassifier, Preprocessor
from .errors import (
    DataError,
    EgideError,
    InputError,
    ModelError,
    ParameterError,
    PluginConflictError,
    PluginLoadError,
    PluginNotFoundError,
)
from .hookspecs import hookimpl
from .plugin import KINDS, Plugin
from .registry import PluginFailure, PluginSource, Registry, registry
from .results import AttackResult
from .sources import DatasetSource, ModelSource
from .trainer import Trainer, TrainerParams

__all__ = [
    "KINDS",
    "Attack",
    "AttackResult",
    "Classifier",
    "DataError",
    "DatasetSource",
    "Defense",
    "Detector",
    "EgideError",
    "Guard",
    "GuardedPrediction",
    "InputError",
    "ModelError",
    "ModelSource",
    "ParameterError",
    "Plugin",
    "PluginConflictError",
    "PluginFailure",
    "PluginLoadError",
    "PluginNotFoundError",
    "PluginSource",
    "PreprocessedClassifier",
    "Preprocessor",
    "Progress",
    "Registry",
    "Trainer",
    "TrainerParams",
    "hookimpl",
    "load_detector",
    "registry",
]
