"""Loading data sets: `load()` for named data sets, .npz files and folders of class folders.

Whatever the source stores (uint8 or 16-bit pixels, one-hot labels, grayscale or RGB), a loader
returns an `egide.core.Dataset`: float32 NHWC images in [0, 1] and int64 class indices. Bad input
is one error naming the files and the fix; nothing is skipped silently.
"""

from __future__ import annotations

import os
from pathlib import Path

from egide.core.dataset import Dataset
from egide.core.errors import DataError

from .folders import load_folder
from .npz import load_npz
from .options import checked_options, finish

__all__ = ["Dataset", "load"]


def _named_sources() -> dict:
    """Data-set plugins by name, from the process-wide registry."""
    from egide.core.registry import registry

    reg = registry()
    return {name: reg.get("dataset", name) for name in reg.names("dataset")}


def load(name_or_path, split: str | None = None, *, image_size=None, channels=None, limit=None) -> Dataset:
    """Load a built-in data set by name, an .npz file, or a folder with one subfolder per class.

    split: read `x_<split>`/`y_<split>` of an .npz, or the `<split>/` subfolder of a folder.
    image_size: (H, W) to resize every image to; channels: 1 (grayscale) or 3 (RGB);
    limit: keep only the first n images (read order: classes by name, files by name).
    """
    size, channels, limit = checked_options(image_size, channels, limit)
    if split is not None and (not isinstance(split, str) or split in ("", ".", "..") or Path(split).name != split):
        raise DataError(f"split must be a plain name such as 'train' or 'test', got {split!r}")
    named = _named_sources()
    if isinstance(name_or_path, str) and name_or_path in named:
        # Named data sets (data-set plugins) are consulted before the file system.
        return finish(named[name_or_path]().load(split=split), size, channels, limit)
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        loader = load_folder
    elif path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(
                f"{path}: unsupported file type '{path.suffix}'; give an .npz file (arrays x, y) "
                "or a folder with one subfolder of images per class"
            )
        loader = load_npz
    else:
        known = f" (named data sets: {', '.join(sorted(named))})" if named else ""
        raise DataError(f"no data set named '{name_or_path}': not a file or folder{known}")
    try:
        return loader(path, split, size, channels, limit)
    except DataError as exc:  # say once which source the problem is in
        raise DataError(f"{path}: {exc}") from None
