"""Named data sets and models as plugins, so built-in names resolve wherever a path is accepted.

A data-set plugin turns a name (`brain-tumor-phantom`) into a `Dataset` for a split; a model
plugin turns a name (`brain-tumor-cnn`) into a `Classifier`. They come through the same entry
points as attacks, so a third party can ship its own named data or models the same way.
"""

from __future__ import annotations

from typing import ClassVar

from .plugin import Plugin


class DatasetSource(Plugin):
    kind = "dataset"
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def load(self, split: str | None = None):
        """Return the `Dataset` of one split (all of it when `split` is None)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")


class ModelSource(Plugin):
    kind = "model"
    # The named data set the model was trained on (its classes, its held-out images): what the
    # server preselects with it and fits detectors on. None when the model names none.
    dataset: ClassVar[str | None] = None

    def load(self):
        """Return the model as an `egide.Classifier`."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")


class ModelFormat(Plugin):
    """A model file format besides Keras's (e.g. ONNX): reads a file into a `Classifier`.
    `Classifier.load` asks the installed formats which one reads a file's suffix."""

    kind = "model-format"
    suffixes: ClassVar[tuple[str, ...]] = ()  # lower case, with the dot: (".onnx",)

    def load_file(self, path, input_range=None, normalize=None):
        """Return the model in `path` as an `egide.Classifier` (normalize: per-channel (means, stds))."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_file()")

    def check(self, clf, x) -> dict:
        """Compare a classifier this format made with its source on images x (NHWC in [0, 1]):
        {"images", "max_abs_difference", "tolerance"}, or a ModelError when they disagree."""
        raise NotImplementedError(f"{type(self).__name__} must implement check()")
