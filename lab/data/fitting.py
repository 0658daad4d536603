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
    *size, c = clf.input_shape  # (H, W) of an image, (D, H, W) of a volume
    own = data.image_shape
    if len(own) != len(clf.input_shape):
        kinds = {3: "images (H, W, C)", 4: "volumes (D, H, W, C)"}
        raise DataError(f"the data holds {kinds.get(len(own), shape_text(own))} but {clf.name} takes "
                        f"{kinds[len(clf.input_shape)]}: give it data of its kind")
    if own != clf.input_shape:
        mismatch = f"the images are {shape_text(own)} but {clf.name} expects {shape_text(clf.input_shape)}"
        if not data.from_images:
            raise DataError(
                f"{mismatch}; arrays are not resampled silently: load them with "
                f"image_size={tuple(size)}, channels={c} to convert them, or save arrays of "
                "that shape"
            )
        if own[-1] != c and not {own[-1], c} <= {1, 3}:
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
    x = fit_images(data.x, tuple(size), c) if len(size) == 2 else fit_volumes(data.x, tuple(size), c)
    if x is data.x and names == data.class_names:
        return data
    return replace(data, x=x, class_names=names)


def fit_volumes(x: np.ndarray, size: tuple[int, int, int], channels: int) -> np.ndarray:
    """Volumes (N, D, H, W, C) resampled to size=(D, H, W) by trilinear interpolation (voxel
    centres to voxel centres, each axis stretched to fill the new grid; the loaders have already
    brought every volume to one orientation) and converted to `channels`."""
    n, *own, c = x.shape
    if tuple(own) == tuple(size) and c == channels:
        return x
    from scipy import ndimage

    if c != channels:  # gray <-> RGB, before resampling: fewer channels to resample
        x = (x @ LUMA)[..., None] if c == 3 else np.repeat(x, channels, axis=-1)
    out = np.empty((n, *size, channels), np.float32)
    factors = [new / old for new, old in zip(size, own)] + [1]
    for i in range(n):
        out[i] = ndimage.zoom(x[i], factors, order=1, mode="nearest", grid_mode=True)
    return np.clip(out, 0.0, 1.0, out=out)


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
