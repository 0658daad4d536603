"""The options every loader takes — image_size, channels, and a draw of N images — checked, then applied."""

from __future__ import annotations

from dataclasses import replace

from egide.core.dataset import Dataset, is_int
from egide.core.errors import DataError

from .fitting import fit_images


def checked_options(image_size, channels, limit):
    size = None
    if image_size is not None:
        dims = (image_size, image_size) if is_int(image_size) else image_size
        try:
            ok = len(dims) in (2, 3) and all(is_int(d) and d > 0 for d in dims)
        except TypeError:
            ok = False
        if not ok:
            raise DataError(f"image_size must be (height, width) in pixels, or (depth, height, width) for "
                            f"volumes; got {image_size!r}")
        size = tuple(int(d) for d in dims)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if limit is not None and not (is_int(limit) and limit > 0):
        raise DataError(f"limit must be a positive number of images, got {limit!r}")
    return size, channels, limit


def drawn(ds: Dataset, draw) -> Dataset:
    """The images `draw` takes from a loaded data set (all of them without a draw)."""
    if draw is None:
        return ds
    picked = draw.indices(ds.y, ds.class_names)
    return ds if len(picked) == len(ds) else ds.subset(picked)


def finish(ds: Dataset, size, channels, draw) -> Dataset:
    """Apply the draw, then image_size and channels, to a loaded data set."""
    ds = drawn(ds, draw)
    if len(ds.image_shape) == 4:  # volumes: fitted to the model that reads them (fitting.fit_volumes)
        return ds
    h, w, c = ds.image_shape
    if channels is not None and c != channels and c not in (1, 3):
        raise DataError(f"cannot convert {c}-channel images to {channels} channels")
    x = fit_images(ds.x, size or (h, w), channels or c)
    return ds if x is ds.x else replace(ds, x=x)
