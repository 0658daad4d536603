"""Folders of images, one subfolder per class, optionally inside split folders: the layout of the
public brain-tumour MRI collections. Images are PNG/JPEG (grayscale, RGB or 16-bit), DICOM files
(one image per frame) or NIfTI volumes (one image per slice); one tree holds one of these kinds.
For a model of volumes (slice_axis "volume") each NIfTI file is one volume, and so is each DICOM
series: a folder of slice files inside a class folder (<class>/<study>/*.dcm)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egide.core.dataset import MAX_LISTED, Dataset, listing
from egide.core.errors import DataError

from . import dicom, dicom_series, nifti
from .fitting import fit_images, is_gray, resampling
from .splits import canonical, split_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
KINDS = {"image": "PNG/JPEG images", "dicom": "DICOM files", "nifti": "NIfTI volumes",
         "series": "DICOM series (folders of slices)"}


class MixedSizesError(DataError):
    """The images (or volumes) differ in size: `sizes` says which, with an example of each;
    `common` is the most common (height, width) or (depth, height, width). An evaluation resizes
    them all to the model's input; a caller of `load` passes image_size."""

    def __init__(self, sizes: str, common: tuple[int, ...], where=None):
        self.sizes, self.common = sizes, tuple(common)
        what, axes = ("volumes", "(depth, height, width)") if len(common) == 3 else ("images", "(height, width)")
        super().__init__(f"{where}: " * bool(where) + f"the {what} differ in size ({sizes}); pass "
                         f"image_size={axes} to resize them all to one size")


@dataclass(frozen=True)
class ScanOptions:
    """How scans become images: a DICOM VOI window (centre, width) instead of the stored one,
    the NIfTI slice axis, and whether slices without tissue are dropped."""

    window: tuple[float, float] | None = None
    slice_axis: str = "axial"
    skip_empty_slices: bool = False


def load_folder(base: Path, split, size, channels, draw=None, scans: ScanOptions = ScanOptions()) -> Dataset:
    """A folder of class folders; `draw` (a lab.data.sampling.Draw) picks the images to keep: PNG/JPEG
    files are chosen before any is decoded, scans once their frames or slices are counted."""
    from PIL import Image

    items = _volume_items if scans.slice_axis == nifti.VOLUME else _images  # what one example is
    root = base if split is None else split_folder(base, split, _subfolders(base), items)
    classes = _subfolders(root)
    if not classes:
        loose = " (it holds images directly: move them into one folder per class)" if _images(root) else ""
        raise DataError(
            f"no class folders found{loose}; expected one subfolder of images (PNG, JPEG, DICOM "
            f"or NIfTI) per class, e.g. {root / 'glioma' / '0001.png'}, or <root>/<split>/<class>/ "
            "with split="
        )
    per_class = [items(folder) for folder in classes]
    empty = [folder for folder, files in zip(classes, per_class) if not files]
    if empty and len(empty) == len(classes) and scans.slice_axis != nifti.VOLUME and holds_series(base):
        raise DataError("it holds DICOM series, one folder of slices per study (<class>/<study>/*.dcm): "
                        "volumes, which a model of volumes reads (slice_axis='volume')")
    if empty and len(empty) == len(classes) and all(_subfolders(f) for f in classes):
        names = listing([f.name for f in classes])
        raise DataError(f"it holds split folders ({names}): pass split='{classes[0].name}' (or another)")
    if empty:
        raise DataError(
            f"class folder(s) without images (PNG, JPEG, DICOM or NIfTI): "
            f"{listing([f.name for f in empty])}; add images or remove the folders"
        )

    files = [(path, label) for label, paths in enumerate(per_class) for path in paths]
    kinds = Counter(_kind(path) for path, _ in files)
    if len(kinds) > 1:
        example = {}
        for path, _ in files:
            example.setdefault(_kind(path), path)
        shown = ", ".join(f"{count} {KINDS[k]} (e.g. {_name(example[k], base)})" for k, count in kinds.most_common())
        raise DataError(f"the folders mix formats: {shown}; keep one kind of file per data set")
    names = tuple(folder.name for folder in classes)
    if "image" not in kinds:
        return _load_scans(files, next(iter(kinds)), base, names, size, channels, draw, scans)
    if draw is not None:
        files = [files[i] for i in draw.indices([label for _, label in files], names)]
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
            raise MixedSizesError(shown, sizes.most_common(1)[0][0])
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
        _refuse(bad, files, base, "image file(s)")
    y = np.fromiter((label for _, label in files), np.int64, len(files))
    return Dataset(x, y, names, from_images=True)


def _load_scans(files, kind: str, base: Path, names, size, channels, draw, scans: ScanOptions) -> Dataset:
    """DICOM or NIfTI files: every frame or slice an image of its file's class."""
    if scans.slice_axis == nifti.VOLUME:
        return _load_volumes(files, kind, base, names, size, draw, scans.window)
    cuts, labels, origin, bad = [], [], [], {}
    for i, (path, label) in enumerate(files):
        try:
            stack = (dicom.read_dicom(path, scans.window) if kind == "dicom"
                     else nifti.read_nifti(path, scans.slice_axis, scans.skip_empty_slices))
        except ValueError as exc:
            bad[i] = str(exc)
            continue
        cuts.extend(stack)
        labels += [label] * len(stack)
        origin += [path] * len(stack)
    if bad:
        _refuse(bad, files, base, f"of the {KINDS[kind]}")
    if draw is not None and cuts:
        picked = draw.indices(labels, names)
        cuts, labels, origin = ([seq[i] for i in picked] for seq in (cuts, labels, origin))
    sizes = Counter(c.shape[:2] for c in cuts)
    if size is None and len(sizes) > 1:
        example = {}
        for c, path in zip(cuts, origin):
            example.setdefault(c.shape[:2], path)
        shown = ", ".join(f"{hh}x{ww}: {count} (e.g. {_name(example[(hh, ww)], base)})"
                          for (hh, ww), count in sizes.most_common(5))
        raise MixedSizesError(shown, sizes.most_common(1)[0][0])
    size = size or next(iter(sizes))
    channels = channels or max(c.shape[2] for c in cuts)
    x = np.empty((len(cuts), size[0], size[1], channels), np.float32)
    for i, c in enumerate(cuts):
        x[i] = fit_images(c[None], size, channels)[0]
    return Dataset(x, np.asarray(labels, np.int64), names, from_images=True)


def _load_volumes(files, kind: str, base: Path, names, size, draw, window=None) -> Dataset:
    """NIfTI files or DICOM series, each one volume of its class. With `size` (D, H, W), a volume of
    another shape is resampled onto it keeping its physical proportions (`nifti.fit_volume`); one
    already of that shape is taken voxel for voxel."""
    if kind not in ("nifti", "series"):
        raise DataError(f"these are {KINDS[kind]}, read as 2-D images; a model of volumes reads NIfTI files "
                        "(one volume per file) or DICOM series (one folder of slice files per study: "
                        "<class>/<study>/*.dcm)")
    if draw is not None:
        files = [files[i] for i in draw.indices([label for _, label in files], names)]
    read, bad = {}, {}
    for i, (path, _) in enumerate(files):
        try:
            read[i] = nifti.read_volume(path) if kind == "nifti" else dicom_series.read_series(path, window)
        except ValueError as exc:
            bad[i] = str(exc)
    if bad:
        _refuse(bad, files, base, f"of the {KINDS[kind]}")
    shapes = Counter(volume.shape[:3] for volume, _ in read.values())
    if size is None and len(shapes) > 1:  # an evaluation passes the model's grid
        shown = ", ".join(f"{'x'.join(map(str, shape))}: {count}" for shape, count in shapes.most_common(5))
        raise MixedSizesError(shown, shapes.most_common(1)[0][0])
    size = tuple(size or next(iter(shapes)))
    x = np.stack([volume if volume.shape[:3] == size else nifti.fit_volume(volume, spacing, size)
                  for volume, spacing in (read[i] for i in range(len(files)))])
    y = np.fromiter((label for _, label in files), np.int64, len(files))
    return Dataset(x, y, names, from_images=True)


def _refuse(bad: dict, files, base: Path, what: str):
    """One error naming every file that could not be read (file index -> reason), in order."""
    lines = [f"  {_name(files[i][0], base)}: {bad[i]}" for i in sorted(bad)]
    more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    raise DataError(f"{len(lines)} {what} could not be read; fix or remove them:\n"
                    + "\n".join(lines[:MAX_LISTED]) + more)


def _kind(path: Path) -> str:
    if path.is_dir():
        return "series"
    name = path.name.lower()
    if name.endswith(dicom.SUFFIXES):
        return "dicom"
    if nifti.is_nifti(path):
        return "nifti"
    return "image"


def split_folders(base: Path, volumes: bool = False) -> list[str]:
    """The split folders of a tree (folders of class folders, holding no images themselves; for
    volumes, no DICOM series either: <class>/<study>/*.dcm has no splits)."""
    items = _volume_items if volumes else _images
    folders = _subfolders(base)
    if folders and all(_subfolders(f) and not items(f) for f in folders):
        return [f.name for f in folders]
    return []


def holds_series(base: Path) -> bool:
    """Whether a tree's examples are DICOM series (<class>/<study>/*.dcm, maybe in split folders)
    rather than DICOM files. <a>/<b>/*.dcm is ambiguous: it is read as <split>/<class>/<file> when
    every <a> is named like a split (train, val, test and their spellings), else as <class>/<study>."""
    as_volumes, as_images = split_folders(base, volumes=True), split_folders(base)
    if as_images and not as_volumes and all(canonical(s) in ("train", "val", "test") for s in as_images):
        return False
    roots = [base / s for s in as_volumes] or [base]
    return any(dicom_series.is_series(study) for root in roots for cls in _subfolders(root) for study in _subfolders(cls))


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
        (p for p in folder.iterdir() if p.is_file() and not _hidden(p)
         and (p.suffix.lower() in IMAGE_SUFFIXES or _kind(p) != "image")),
        key=lambda p: p.name,
    )


def _volume_items(folder: Path) -> list[Path]:
    """What a class folder holds for a model of volumes: its files (NIfTI volumes, or DICOM files
    that are refused with the reason) and its DICOM series, one folder of slices per study."""
    return sorted(_images(folder) + [p for p in _subfolders(folder) if dicom_series.is_series(p)],
                  key=lambda p: p.name)


def _why(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a readable PNG/JPEG image"
    return str(exc) or type(exc).__name__


def _name(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()
