"""Folders of images, one subfolder per class (PNG/JPEG, grayscale or RGB), optionally inside
split folders: the layout of the public brain-tumour MRI collections."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from egide.core.dataset import (
    MAX_LISTED,
    Dataset,
    is_gray,
    listing,
    resampling,
)
from egide.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_folder(base: Path, split, size, channels, limit) -> Dataset:
    from PIL import Image

    root = base
    if split is not None:
        root = base / split
        if not root.is_dir():
            folders = _subfolders(base)
            here = listing([p.name for p in folders]) or "no folders"
            hint = "; if those are the classes, omit split=" if any(map(_images, folders)) else ""
            raise DataError(f"no '{split}' folder here; it holds {here}{hint}")
    classes = _subfolders(root)
    if not classes:
        loose = " (it holds images directly: move them into one folder per class)" if _images(root) else ""
        raise DataError(
            f"no class folders found{loose}; expected one subfolder of PNG/JPEG images per "
            f"class, e.g. {root / 'glioma' / '0001.png'}, or <root>/<split>/<class>/ with split="
        )
    per_class = [_images(folder) for folder in classes]
    empty = [folder for folder, files in zip(classes, per_class) if not files]
    if empty and len(empty) == len(classes) and all(_subfolders(f) for f in classes):
        names = listing([f.name for f in classes])
        raise DataError(f"it holds split folders ({names}): pass split='{classes[0].name}' (or another)")
    if empty:
        raise DataError(
            f"class folder(s) without PNG/JPEG images: {listing([f.name for f in empty])}; "
            "add images or remove the folders"
        )

    files = [(path, label) for label, paths in enumerate(per_class) for path in paths]
    if limit is not None:
        files = files[:limit]
    bad: dict[int, str] = {}  # file index -> reason, kept in file order

    # First pass reads headers only (cheap), to choose the size and channels before decoding.
    headers: list[tuple[str, tuple[int, int]] | None] = []
    for i, (path, _) in enumerate(files):
        try:
            with Image.open(path) as im:
                headers.append((im.mode, (im.height, im.width)))
        except Exception as exc:  # Pillow raises many types for a broken file
            headers.append(None)
            bad[i] = _why(exc)
    good = [(i, h) for i, h in enumerate(headers) if h is not None]
    if size is None and good:
        sizes = Counter(h[1] for _, h in good)
        if len(sizes) > 1:
            example = {}
            for i, h in good:
                example.setdefault(h[1], files[i][0])
            shown = ", ".join(
                f"{hh}x{ww}: {count} (e.g. {_name(example[(hh, ww)], base)})"
                for (hh, ww), count in sizes.most_common(5)
            )
            raise DataError(
                f"the images differ in size ({shown}); pass image_size=(height, width) to "
                "resize them all to one size"
            )
        size = good[0][1][1]
    if channels is None:
        channels = 1 if all(is_gray(h[0]) for _, h in good) else 3

    # Second pass decodes straight into one preallocated array.
    x = np.empty((len(files), size[0], size[1], channels), np.float32) if good else None
    for i, _ in good:
        try:
            x[i] = _decode(files[i][0], size, channels)
        except Exception as exc:  # truncated or damaged pixel data
            bad[i] = _why(exc)
    if bad:
        lines = [f"  {_name(files[i][0], base)}: {bad[i]}" for i in sorted(bad)]
        more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        raise DataError(
            f"{len(lines)} image file(s) could not be read; fix or remove them:\n"
            + "\n".join(lines[:MAX_LISTED])
            + more
        )
    y = np.fromiter((label for _, label in files), np.int64, len(files))
    return Dataset(x, y, tuple(folder.name for folder in classes), from_images=True)


def _decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as float32 (H, W, C) in [0, 1]; gray (H, W, 1) when it is 16-bit."""
    from PIL import Image

    h, w = size
    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16-bit grayscale (medical PNGs): keep its precision
            im = Image.fromarray(np.clip(np.asarray(im, np.float32) / 65535.0, 0.0, 1.0))
            scale = 1.0
        else:
            im = im.convert("L" if channels == 1 else "RGB")  # drops alpha, expands palettes
            scale = 1.0 / 255.0
        if im.size != (w, h):
            im = im.resize((w, h), resampling((im.height, im.width), size))
        pixels = np.asarray(im, np.float32) * scale
    return pixels.reshape(h, w, -1)


def _hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name == "__MACOSX"


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _hidden(p)), key=lambda p: p.name)


def _images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not _hidden(p) and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )


def _why(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a readable PNG/JPEG image"
    return str(exc) or type(exc).__name__


def _name(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()
