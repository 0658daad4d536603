"""Data sets: Dataset(x, y, class_names) and loaders. (Loaders are being written.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]


def load(name_or_path, split=None, **options) -> Dataset:
    raise NotImplementedError
