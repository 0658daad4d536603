"""Data fitted to a model's input: images decoded from files are resized and converted
grayscale <-> RGB as a viewer would (area averaging to shrink, bilinear to enlarge); arrays are
data as given and must already fit."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from egide.core.classifier import Classifier
from egide.core.dataset import Dataset, index_names, listing, shape_text
from egide.core.errors import DataError

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> gray weights (ITU-R 601, as Pillow)


def for_classifier(data: Dataset, clf) -> Dataset:
    """This data checked against `clf`; images from files are resized and converted
    grayscale<->RGB to its input, arrays must already fit. Returns `data` if nothing changes."""
    if not isinstance(clf, Classifier):
        raise DataError(
            f"expected an egide.Classifier, got {type(clf).__name__}; wrap a Keras model "
            "with egide.Classifier.from_keras(model)"
        )
    h, w, c = clf.input_shape
    own = data.image_shape
    if own != (h, w, c):
        mismatch = f"the images are {shape_text(own)} but {clf.name} expects {shape_text((h, w, c))}"
        if not data.from_images:
            raise DataError(
                f"{mismatch}; arrays are not resampled silently: load them with "
                f"image_size=({h}, {w}), channels={c} to convert them, or save arrays of "
                "that shape"
            )
        if own[2] != c and not {own[2], c} <= {1, 3}:
            raise DataError(f"{mismatch}: only grayscale (1) <-> RGB (3) conversions are done")
    names = data.class_names
    if names == index_names(len(names)) and len(names) < clf.num_classes:
        names = index_names(clf.num_classes)  # the names were only guessed from the labels
    if clf.num_classes != len(names):
        raise DataError(
            f"the data set has {len(names)} classes ({listing(names)}) but {clf.name} "
            + ("has one sigmoid output: two classes" if clf.model.output_shape[-1] == 1
               else f"outputs {clf.num_classes}")
        )
    x = fit_images(data.x, (h, w), c)
    if x is data.x and names == data.class_names:
        return data
    return replace(data, x=x, class_names=names)


def fit_images(x: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """x resized to size=(H, W) and converted to `channels`; x itself when it already fits."""
    n, h, w, c = x.shape
    if (h, w) == tuple(size) and c == channels:
        return x
    from PIL import Image

    out = np.empty((n, size[0], size[1], channels), np.float32)
    for i in range(n):
        image = x[i]
        if c == 3 and channels == 1:  # convert before resizing: one channel to resample
            image = (image @ LUMA)[..., None]
        if (h, w) != tuple(size):
            image = np.stack(
                [
                    np.asarray(
                        Image.fromarray(np.ascontiguousarray(image[..., k])).resize(
                            (size[1], size[0]), resampling((h, w), size)
                        )
                    )
                    for k in range(image.shape[-1])
                ],
                axis=-1,
            )
        out[i] = image  # a 1-channel image broadcasts into 3 channels
    return np.clip(out, 0.0, 1.0, out=out)  # float rounding of the weights may step past 1


def resampling(old: tuple[int, int], new: tuple[int, int]):
    """Area averaging to shrink (no blur beyond each output pixel), bilinear to enlarge."""
    from PIL import Image

    shrink = new[0] <= old[0] and new[1] <= old[1]
    return Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR


def is_gray(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "F") or mode.startswith("I")
