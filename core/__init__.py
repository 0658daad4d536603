"""The Égide kernel: the plugin contract, the registry, the classifier, typed results and the
small toolkit plugin authors share. It imports nothing of Égide outside `egide.core`."""

from importlib.metadata import PackageNotFoundError, version

from .attack import Attack, Progress
from .classifier import Classifier
from .dataset import Dataset
from .defense import Defense
from .detector import Detector, load_detector
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
from .sources import DatasetSource, ModelFormat, ModelSource
from .trainer import Trainer, TrainerParams

try:
    __version__ = version("egide")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "KINDS",
    "Attack",
    "AttackResult",
    "Classifier",
    "DataError",
    "Dataset",
    "DatasetSource",
    "Defense",
    "Detector",
    "EgideError",
    "InputError",
    "ModelError",
    "ModelFormat",
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
