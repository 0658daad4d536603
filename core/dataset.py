"""`Dataset(x, y, class_names)`: the images and labels every attack, defense and detector reads.

Whatever the source stored (uint8 or 16-bit pixels, one-hot labels, grayscale or RGB), a Dataset
holds float32 NHWC images in [0, 1] and int64 class indices; the loaders live in `egide.lab.data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from .errors import DataError

MAX_LISTED = 20  # problems named in one message; the rest are counted, not printed


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images and labels: x float32 (N, H, W, C), or volumes (N, D, H, W, C), in [0, 1]; y int64
    (N,) indexing class_names.

    from_images: decoded from image files, so for_classifier may resample them as a viewer
    would; arrays (False) are data as given and are never resampled without being asked.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    from_images: bool = field(default=False, kw_only=True)

    def __post_init__(self):
        x = checked_images(self.x)
        y, width = checked_labels(self.y, len(x))
        if isinstance(self.class_names, (str, bytes)):
            raise DataError("class_names must be a sequence of names, not one string")
        names = tuple(str(name) for name in self.class_names)
        if not names or len(set(names)) != len(names):
            raise DataError(f"class_names must be distinct and not empty, got {names}")
        if width is not None and width != len(names):
            raise DataError(f"labels are one-hot over {width} classes but {len(names)} are named")
        if y.max() >= len(names):
            raise DataError(
                f"labels go up to {int(y.max())} but only {len(names)} classes are named "
                f"({listing(names)})"
            )
        # Frozen dataclass: the normalised arrays replace what was given, without a copy if possible.
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def take(self, n: int) -> "Dataset":
        """The first n images (a view, no copy)."""
        if not (is_int(n) and n > 0):
            raise DataError(f"take(n) needs a positive number of images, got {n!r}")
        return replace(self, x=self.x[:n], y=self.y[:n])

    def subset(self, selection) -> "Dataset":
        """The images picked by a boolean mask (one entry per image) or by integer indices."""
        sel = np.asarray(selection)
        n = len(self)
        if sel.dtype == bool:
            if sel.shape != (n,):
                raise DataError(f"a mask needs one entry per image ({n}), got shape {sel.shape}")
        elif sel.dtype.kind in "iu" and sel.ndim == 1:
            if sel.size and (sel.min() < -n or sel.max() >= n):
                raise DataError(f"indices must lie in 0..{n - 1}, got {int(sel.min())}..{int(sel.max())}")
        else:
            raise DataError(f"select images with a boolean mask or integer indices, got {sel.dtype}")
        if (sel.sum() if sel.dtype == bool else sel.size) == 0:
            raise DataError("the selection is empty: it picks no image")
        return replace(self, x=self.x[sel], y=self.y[sel])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(x, y) views of consecutive batches, for streaming without copies."""
        if not (is_int(batch_size) and batch_size > 0):
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def __repr__(self) -> str:
        return (
            f"<Dataset {len(self)} images {shape_text(self.image_shape)}, "
            f"{self.num_classes} classes: {listing(self.class_names, 6)}>"
        )

def checked_images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        hint = " (for 8-bit images: x / 255)" if x.dtype.kind in "iub" else ""
        raise DataError(f"images must be floats in [0, 1], got dtype {x.dtype}{hint}")
    if x.ndim not in (4, 5):
        hint = "; add a channel axis with x[..., None]" if x.ndim == 3 else ""
        raise DataError(f"images must have shape (N, H, W, C), or (N, D, H, W, C) for volumes; got "
                        f"{x.shape}{hint}")
    if len(x) == 0:
        raise DataError("the data set is empty")
    x = x.astype(np.float32, copy=False)
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DataError("images contain NaN or Inf values; clean them first")
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"image values lie in [{lo:.4g}, {hi:.4g}] but must lie in [0, 1]; rescale them "
            "(for 0..255 data: x / 255)"
        )
    return x

def checked_labels(y, n: int) -> tuple[np.ndarray, int | None]:
    """Labels as int64 class indices, and the one-hot width when they came one-hot."""
    y = np.asarray(y)
    width = None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"labels of shape {y.shape} must be one-hot rows (a single 1 per row)")
        width = y.shape[1]
        y = y.argmax(axis=1)
    if y.ndim != 1:
        raise DataError(f"labels must be class indices (N,) or one-hot (N, K), got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"there are {n} images but {len(y)} labels")
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError("labels must be whole class indices, got fractional or NaN values")
    elif y.dtype.kind not in "iu":
        raise DataError(f"labels must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if len(y) and y.min() < 0:
        raise DataError(f"labels must be class indices >= 0, got {int(y.min())}")
    return y, width

def index_names(count: int) -> tuple[str, ...]:
    """The names of classes nobody named: "0", "1", ..."""
    return tuple(str(i) for i in range(count))

def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

def shape_text(shape) -> str:
    return "x".join(str(d) for d in shape)

def listing(items, most: int = MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
