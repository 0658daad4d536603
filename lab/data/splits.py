"""Split names as people write them: train/training, val/valid/validation, test/testing, in any
case (the public brain-tumour MRI collection ships `Training/` and `Testing/`), and `all`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from egide.core.dataset import Dataset, listing
from egide.core.errors import DataError

ALL = "all"
_GROUPS = (("train", "training"), ("val", "valid", "validation"), ("test", "testing"))


def canonical(name: str) -> str:
    low = name.lower()
    return next((group[0] for group in _GROUPS if low in group), low)


def match(split: str, available) -> str | None:
    """The name among `available` that means `split` (exact first, then by meaning), or None."""
    available = list(available)
    if split in available:
        return split
    return next((name for name in available if canonical(name) == canonical(split)), None)


def split_folder(base: Path, split: str, subfolders: list[Path], has_images) -> Path:
    """The folder of `split` under base, or an error listing the folders that are there."""
    found = match(split, [p.name for p in subfolders])
    if found is not None:
        return base / found
    here = listing([p.name for p in subfolders]) or "no folders"
    hint = "; if those are the classes, omit split= (or pass split='all')" if any(map(has_images, subfolders)) else ""
    raise DataError(f"no '{split}' split here; it holds {here}{hint}")


def concatenated(parts: list[Dataset]) -> Dataset:
    """Several splits as one data set; classes are matched by name (a split may lack some)."""
    names: list[str] = []
    for part in parts:
        names += [n for n in part.class_names if n not in names]
    shapes = {part.image_shape for part in parts}
    if len(shapes) > 1:
        raise DataError(f"the splits hold images of different shapes ({listing(sorted(map(str, shapes)))}); "
                        "pass image_size= and channels= to load them together")
    ys = [np.asarray([names.index(part.class_names[int(v)]) for v in part.y], np.int64) for part in parts]
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate(ys), tuple(names),
                   from_images=any(p.from_images for p in parts))
