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

from .fitting import for_classifier
from .folders import MixedSizesError, ScanOptions, load_folder, split_folders
from .nifti import VOLUME
from .npz import load_npz, npz_splits
from .options import checked_options, drawn, finish
from .sampling import SAMPLINGS, Draw, Subset
from .splits import ALL, concatenated, match

__all__ = ["SAMPLINGS", "Dataset", "Draw", "MixedSizesError", "Subset", "available_splits", "drawn",
           "for_classifier", "load", "load_for_model"]


def _named_sources(reg=None) -> dict:
    """Data-set plugins by name, from `reg` (default: the process-wide registry)."""
    if reg is None:
        from egide.core.registry import registry

        reg = registry()
    return {name: reg.get("dataset", name) for name in reg.names("dataset")}


def load(name_or_path, split: str | None = None, *, image_size=None, channels=None, limit=None,
         sampling: str = "stratified", seed: int = 0, draw: Draw | None = None,
         window=None, slice_axis: str = "axial", skip_empty_slices: bool = False, registry=None) -> Dataset:
    """Load a named data set (a data-set plugin of `registry`, default the process's), an .npz
    file, or a folder with one subfolder per class of PNG/JPEG images, DICOM files or NIfTI volumes.

    split: read `x_<split>`/`y_<split>` of an .npz, or the `<split>/` subfolder of a folder;
    'training'/'Testing'/'valid' and the like name the same splits as train/test/val, and 'all'
    reads every split together. image_size: (H, W) to resize every image to; channels: 1
    (grayscale) or 3 (RGB); limit: keep n images, drawn by `sampling` under `seed`: 'stratified'
    by class (default), 'random', or 'first' (read order: classes by name, files by name); or
    pass a `Draw`, whose `subset` then says what was taken. DICOM: window=(centre, width)
    replaces the stored VOI window. NIfTI: slice_axis 'axial' (default), 'coronal' or
    'sagittal'; skip_empty_slices drops slices without tissue; slice_axis 'volume' reads each NIfTI
    file, and each DICOM series (a folder of slices, <class>/<study>/*.dcm), as one volume
    (N, D, H, W, 1), resampled to image_size=(D, H, W) when given.
    """
    size, channels, limit = checked_options(image_size, channels, limit)
    if draw is None and limit is not None:
        draw = Draw(limit, seed, sampling)
    scans = _scan_options(window, slice_axis, skip_empty_slices)
    if isinstance(split, str) and split.lower() == ALL:
        parts = [load(name_or_path, s, image_size=size, channels=channels, window=window,
                      slice_axis=slice_axis, skip_empty_slices=skip_empty_slices, registry=registry)
                 for s in _splits_of(name_or_path, registry, volumes=slice_axis == VOLUME)]
        return finish(concatenated(parts), None, None, draw)
    if split is not None and (not isinstance(split, str) or split in ("", ".", "..") or Path(split).name != split):
        raise DataError(f"split must be a plain name such as 'train' or 'test', got {split!r}")
    named = _named_sources(registry)
    if isinstance(name_or_path, str) and name_or_path in named:
        # Named data sets (data-set plugins) are consulted before the file system.
        source = named[name_or_path]()
        split = split if split is None else (match(split, getattr(source, "splits", ())) or split)
        return finish(source.load(split=split), size, channels, draw)
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
        if loader is load_folder:
            return load_folder(path, split, size, channels, draw, scans)
        return loader(path, split, size, channels, draw)
    except MixedSizesError as exc:
        raise MixedSizesError(exc.sizes, exc.common, where=path) from None
    except DataError as exc:  # say once which source the problem is in
        raise DataError(f"{path}: {exc}") from None


def load_for_model(name_or_path, clf, **options) -> tuple[Dataset, str | None]:
    """`load` for a model's evaluation: scans of several sizes (which `load` alone refuses) are
    each resized to the model's input. Returns the data set and, then, which sizes there were.
    A model of volumes reads each NIfTI file whole, resampled to its grid."""
    if len(clf.input_shape) == 4:
        options.update(slice_axis=VOLUME, image_size=clf.input_shape[:3])
        return load(name_or_path, **options), None
    try:
        return load(name_or_path, **options), None
    except MixedSizesError as exc:
        return load(name_or_path, image_size=clf.input_shape[:2], **options), exc.sizes


def available_splits(name_or_path, registry=None, volumes: bool = False) -> list[str]:
    """The splits a data set has (a named one's declared `splits`, a folder's split folders, an
    .npz's x_<split> arrays); empty for one set of images without splits. volumes: read for a
    model of volumes (a folder's DICOM series are examples, not splits)."""
    named = _named_sources(registry)
    if isinstance(name_or_path, str) and name_or_path in named:
        return list(getattr(named[name_or_path], "splits", ()) or ())
    return [s for s in _splits_of(name_or_path, registry, volumes) if s is not None]


def _splits_of(name_or_path, registry=None, volumes: bool = False) -> list[str | None]:
    """The splits `all` reads: each split of the source, or [None] for a source without splits."""
    named = _named_sources(registry)
    if isinstance(name_or_path, str) and name_or_path in named:
        return [None]  # a named data set's split=None is all of it
    path = Path(os.fspath(name_or_path)).expanduser()
    try:
        found = split_folders(path, volumes) if path.is_dir() else npz_splits(path) if path.is_file() else []
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    return found or [None]


def _scan_options(window, slice_axis, skip_empty_slices) -> ScanOptions:
    from .nifti import AXES

    if window is not None:
        try:
            centre, width = (float(v) for v in window)
        except (TypeError, ValueError):
            raise DataError(f"window must be (centre, width), e.g. (40, 400) for a CT brain window; got {window!r}") from None
        if not width > 0:
            raise DataError(f"the window's width must be positive, got {width:g}")
        window = (centre, width)
    if slice_axis not in (*AXES, VOLUME):
        raise DataError(f"slice_axis must be one of {', '.join(AXES)} or {VOLUME}, got {slice_axis!r}")
    return ScanOptions(window, slice_axis, bool(skip_empty_slices))
