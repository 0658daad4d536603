""".npz data: arrays `x`, `y` (optional `class_names`), or per split `x_test`/`y_test`...

Nothing is unpickled: archives open with allow_pickle=False, because a pickle can run code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egide.core.dataset import (
    Dataset,
    checked_labels,
    index_names,
    listing,
)
from egide.core.errors import DataError

from .splits import match
from .options import finish


def load_npz(path: Path, split, size, channels, draw) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile and numpy raise several types for a broken file
        raise DataError(f"cannot read it as an .npz archive ({exc}); write it with np.savez") from None
    if not hasattr(archive, "files"):
        raise DataError("this is a single .npy array, not an .npz; write it with np.savez(path, x=x, y=y)")
    with archive:
        keys = set(archive.files)
        x_key, y_key = _npz_keys(keys, split)
        x = _npz_read(archive, x_key)
        y = _npz_read(archive, y_key)
        names = _npz_read(archive, "class_names") if "class_names" in keys else None

    if x.ndim == 3:
        x = x[..., None]  # a stack of grayscale images
    if x.ndim not in (4, 5):
        raise DataError(f"'{x_key}' must hold images (N, H, W) or (N, H, W, C), or volumes (N, D, H, W, C); "
                        f"got shape {x.shape}")
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] > 4:
        raise DataError(
            f"'{x_key}' has shape {x.shape}, which looks channels-first (N, C, H, W); "
            "save it channels-last with x.transpose(0, 2, 3, 1)"
        )
    y, width = checked_labels(y, len(x))  # on all labels, so limit cannot hide a class
    if names is None:
        count = width or (int(y.max()) + 1 if len(y) else 0)
        names = index_names(count)
    else:
        if names.ndim != 1:
            raise DataError(f"'class_names' must be a 1-D array of names, got shape {names.shape}")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())

    if draw is not None:  # before conversion: only the kept images are copied
        picked = draw.indices(y, names)
        x, y = x[picked], y[picked]
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        scale = 1.0 / np.iinfo(x.dtype).max
        x = x.astype(np.float32)
        x *= scale
    elif x.dtype.kind != "f":
        raise DataError(
            f"'{x_key}' has dtype {x.dtype}; store images as uint8 (0..255), uint16 (0..65535) "
            "or floats in [0, 1]"
        )
    return finish(Dataset(x, y, names), size, channels, None)


def npz_splits(path: Path) -> list[str]:
    """The splits an .npz holds (x_<split> with y_<split>); [] when it has none."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
    except Exception as exc:  # not a zip, damaged
        raise DataError(f"not a readable .npz file: {exc}") from None
    return sorted(k[2:] for k in keys if k.startswith("x_") and f"y_{k[2:]}" in keys)


def _npz_keys(keys: set[str], split) -> tuple[str, str]:
    splits = sorted(k[2:] for k in keys if k.startswith("x_") and f"y_{k[2:]}" in keys)
    found = listing(sorted(keys)) or "no arrays"
    if split is None:
        if {"x", "y"} <= keys:
            return "x", "y"
        if splits:
            raise DataError(f"it holds the splits {listing(splits)}: pass split='{splits[0]}' (or another)")
        raise DataError(f"expected arrays 'x' (images) and 'y' (labels), found {found}")
    named = match(split, splits)
    if named is not None:
        return f"x_{named}", f"y_{named}"
    if splits:
        raise DataError(f"no split '{split}': the splits are {listing(splits)}")
    raise DataError(
        f"no split '{split}': expected arrays 'x_{split}' and 'y_{split}', found {found}"
        + ("; omit split= to read x and y" if {"x", "y"} <= keys else "")
    )


def _npz_read(archive, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"array '{key}' holds Python objects, which would have to be unpickled (never "
                "done: a pickle can run code); save plain arrays, e.g. "
                "class_names=np.array(names, dtype=str)"
            ) from None
        raise DataError(f"cannot read array '{key}': {exc}") from None
    except Exception as exc:  # a damaged member: zlib, zipfile and OS errors
        raise DataError(f"cannot read array '{key}': {exc}") from None


# ---- image folders -------------------------------------------------------------------------
