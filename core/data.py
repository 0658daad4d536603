"""Data sets: `Dataset(x, y, class_names)` and `load()` for .npz files and image folders.

Whatever the source stores (uint8 or 16-bit pixels, one-hot labels, grayscale or RGB), a loader
returns float32 NHWC images in [0, 1] and int64 class indices. Bad input is one error naming the
files and the fix; nothing is skipped silently. Nothing is unpickled: .npz opens with
allow_pickle=False, because a pickle can run code.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_LISTED = 20  # problems named in one message; the rest are counted, not printed
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> gray weights (ITU-R 601, as Pillow)



@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Images and labels: x float32 (N, H, W, C) in [0, 1]; y int64 (N,) indexing class_names.

    from_images: decoded from image files, so for_classifier may resample them as a viewer
    would; arrays (False) are data as given and are never resampled without being asked.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    from_images: bool = field(default=False, kw_only=True)

    def __post_init__(self):
        x = _checked_images(self.x)
        y, width = _checked_labels(self.y, len(x))
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
                f"({_listing(names)})"
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
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x.shape[1:])

    def take(self, n: int) -> "Dataset":
        """The first n images (a view, no copy)."""
        if not (_is_int(n) and n > 0):
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
        if not (_is_int(batch_size) and batch_size > 0):
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]

    def for_classifier(self, clf) -> "Dataset":
        """This data checked against `clf`; images from files are resized and converted
        grayscale<->RGB to its input, arrays must already fit. Returns self if nothing changes."""
        from .classifier import Classifier

        if not isinstance(clf, Classifier):
            raise DataError(
                f"expected an egide.Classifier, got {type(clf).__name__}; wrap a Keras model "
                "with egide.Classifier.from_keras(model)"
            )
        if clf.clip != (0.0, 1.0):
            lo, hi = clf.clip
            raise DataError(
                f"{clf.name} expects inputs in [{lo:g}, {hi:g}] but data sets hold images in "
                "[0, 1]; build the classifier with clip=(0.0, 1.0) and put the rescaling inside "
                "the model (e.g. a keras.layers.Rescaling first layer)"
            )
        h, w, c = clf.input_shape
        own = self.image_shape
        if own != (h, w, c):
            mismatch = f"the images are {_shape(own)} but {clf.name} expects {_shape((h, w, c))}"
            if not self.from_images:
                raise DataError(
                    f"{mismatch}; arrays are not resampled silently: load them with "
                    f"image_size=({h}, {w}), channels={c} to convert them, or save arrays of "
                    "that shape"
                )
            if own[2] != c and not {own[2], c} <= {1, 3}:
                raise DataError(f"{mismatch}: only grayscale (1) <-> RGB (3) conversions are done")
        names = self.class_names
        if names == _index_names(len(names)) and len(names) < clf.num_classes:
            names = _index_names(clf.num_classes)  # the names were only guessed from the labels
        if clf.num_classes != len(names):
            raise DataError(
                f"the data set has {len(names)} classes ({_listing(names)}) but {clf.name} "
                f"outputs {clf.num_classes}"
            )
        x = _fit_images(self.x, (h, w), c)
        if x is self.x and names == self.class_names:
            return self
        return replace(self, x=x, class_names=names)

    def __repr__(self) -> str:
        return (
            f"<Dataset {len(self)} images {_shape(self.image_shape)}, "
            f"{self.num_classes} classes: {_listing(self.class_names, 6)}>"
        )


def _named_sources() -> dict:
    """Data-set plugins by name, from the process-wide registry."""
    from .registry import registry

    reg = registry()
    return {name: reg.get("dataset", name) for name in reg.names("dataset")}


def load(name_or_path, split: str | None = None, *, image_size=None, channels=None, limit=None) -> Dataset:
    """Load a built-in data set by name, an .npz file, or a folder with one subfolder per class.

    split: read `x_<split>`/`y_<split>` of an .npz, or the `<split>/` subfolder of a folder.
    image_size: (H, W) to resize every image to; channels: 1 (grayscale) or 3 (RGB);
    limit: keep only the first n images (read order: classes by name, files by name).
    """
    size, channels, limit = _check_options(image_size, channels, limit)
    if split is not None and (not isinstance(split, str) or split in ("", ".", "..") or Path(split).name != split):
        raise DataError(f"split must be a plain name such as 'train' or 'test', got {split!r}")
    named = _named_sources()
    if isinstance(name_or_path, str) and name_or_path in named:
        # Named data sets (data-set plugins) are consulted before the file system.
        return _finish(named[name_or_path]().load(split=split), size, channels, limit)
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_dir():
        loader = _load_folder
    elif path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(
                f"{path}: unsupported file type '{path.suffix}'; give an .npz file (arrays x, y) "
                "or a folder with one subfolder of images per class"
            )
        loader = _load_npz
    else:
        known = f" (named data sets: {', '.join(sorted(named))})" if named else ""
        raise DataError(f"no data set named '{name_or_path}': not a file or folder{known}")
    try:
        return loader(path, split, size, channels, limit)
    except DataError as exc:  # say once which source the problem is in
        raise DataError(f"{path}: {exc}") from None


# ---- checks shared by Dataset and the loaders ----------------------------------------------
def _checked_images(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind != "f":
        hint = " (for 8-bit images: x / 255)" if x.dtype.kind in "iub" else ""
        raise DataError(f"images must be floats in [0, 1], got dtype {x.dtype}{hint}")
    if x.ndim != 4:
        hint = "; add a channel axis with x[..., None]" if x.ndim == 3 else ""
        raise DataError(f"images must have shape (N, H, W, C), got {x.shape}{hint}")
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


def _checked_labels(y, n: int) -> tuple[np.ndarray, int | None]:
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


def _check_options(image_size, channels, limit):
    size = None
    if image_size is not None:
        dims = (image_size, image_size) if _is_int(image_size) else image_size
        try:
            ok = len(dims) == 2 and all(_is_int(d) and d > 0 for d in dims)
        except TypeError:
            ok = False
        if not ok:
            raise DataError(f"image_size must be (height, width) in pixels, got {image_size!r}")
        size = (int(dims[0]), int(dims[1]))
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if limit is not None and not (_is_int(limit) and limit > 0):
        raise DataError(f"limit must be a positive number of images, got {limit!r}")
    return size, channels, limit


def _index_names(count: int) -> tuple[str, ...]:
    """The names of classes nobody named: "0", "1", ..."""
    return tuple(str(i) for i in range(count))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _finish(ds: Dataset, size, channels, limit) -> Dataset:
    """Apply limit, then image_size and channels, to a loaded data set."""
    if limit is not None and limit < len(ds):
        ds = ds.take(limit)
    h, w, c = ds.image_shape
    if channels is not None and c != channels and c not in (1, 3):
        raise DataError(f"cannot convert {c}-channel images to {channels} channels")
    x = _fit_images(ds.x, size or (h, w), channels or c)
    return ds if x is ds.x else replace(ds, x=x)


def _fit_images(x: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
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
                            (size[1], size[0]), _resampling((h, w), size)
                        )
                    )
                    for k in range(image.shape[-1])
                ],
                axis=-1,
            )
        out[i] = image  # a 1-channel image broadcasts into 3 channels
    return np.clip(out, 0.0, 1.0, out=out)  # float rounding of the weights may step past 1


# ---- .npz ----------------------------------------------------------------------------------
def _load_npz(path: Path, split, size, channels, limit) -> Dataset:
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
    if x.ndim != 4:
        raise DataError(f"'{x_key}' must hold images (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[3] > 4:
        raise DataError(
            f"'{x_key}' has shape {x.shape}, which looks channels-first (N, C, H, W); "
            "save it channels-last with x.transpose(0, 2, 3, 1)"
        )
    y, width = _checked_labels(y, len(x))  # on all labels, so limit cannot hide a class
    if names is None:
        count = width or (int(y.max()) + 1 if len(y) else 0)
        names = _index_names(count)
    else:
        if names.ndim != 1:
            raise DataError(f"'class_names' must be a 1-D array of names, got shape {names.shape}")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())

    if limit is not None:
        x, y = x[:limit], y[:limit]  # before conversion: only the kept images are copied
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        scale = 1.0 / np.iinfo(x.dtype).max
        x = x.astype(np.float32)
        x *= scale
    elif x.dtype.kind != "f":
        raise DataError(
            f"'{x_key}' has dtype {x.dtype}; store images as uint8 (0..255), uint16 (0..65535) "
            "or floats in [0, 1]"
        )
    return _finish(Dataset(x, y, names), size, channels, None)


def _npz_keys(keys: set[str], split) -> tuple[str, str]:
    splits = sorted(k[2:] for k in keys if k.startswith("x_") and f"y_{k[2:]}" in keys)
    found = _listing(sorted(keys)) or "no arrays"
    if split is None:
        if {"x", "y"} <= keys:
            return "x", "y"
        if splits:
            raise DataError(f"it holds the splits {_listing(splits)}: pass split='{splits[0]}' (or another)")
        raise DataError(f"expected arrays 'x' (images) and 'y' (labels), found {found}")
    if f"x_{split}" in keys and f"y_{split}" in keys:
        return f"x_{split}", f"y_{split}"
    if splits:
        raise DataError(f"no split '{split}': the splits are {_listing(splits)}")
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
def _load_folder(base: Path, split, size, channels, limit) -> Dataset:
    from PIL import Image

    root = base
    if split is not None:
        root = base / split
        if not root.is_dir():
            folders = _subfolders(base)
            here = _listing([p.name for p in folders]) or "no folders"
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
        names = _listing([f.name for f in classes])
        raise DataError(f"it holds split folders ({names}): pass split='{classes[0].name}' (or another)")
    if empty:
        raise DataError(
            f"class folder(s) without PNG/JPEG images: {_listing([f.name for f in empty])}; "
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
        channels = 1 if all(_is_gray(h[0]) for _, h in good) else 3

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
            im = im.resize((w, h), _resampling((im.height, im.width), size))
        pixels = np.asarray(im, np.float32) * scale
    return pixels.reshape(h, w, -1)


def _resampling(old: tuple[int, int], new: tuple[int, int]):
    """Area averaging to shrink (no blur beyond each output pixel), bilinear to enlarge."""
    from PIL import Image

    shrink = new[0] <= old[0] and new[1] <= old[1]
    return Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR


def _is_gray(mode: str) -> bool:
    return mode in ("1", "L", "LA", "La", "F") or mode.startswith("I")


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


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def _listing(items, most: int = MAX_LISTED) -> str:
    items = list(items)
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
