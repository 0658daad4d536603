"""Which images a limited run takes: by default a seeded sample stratified by class.

Folders of scans are stored class by class (`Testing/glioma/…` first), so "the first N images"
would take one class. A `Draw` picks N images from a split's labels instead:

- stratified (default): each class gets its share of N (largest remainders; every class of the
  split gets at least one image when N allows), the images of a class drawn at random;
- random: N images drawn at random, whatever their class;
- first: the first N in read order (classes by name, files by name), as older versions did.

The draw depends only on (labels, N, seed, sampling), so the seed in a report's config replays
the same images. `exclude` keeps images out of the draw: held-out images never overlap the
evaluated ones. After a draw, `Draw.subset` says what was taken from what.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from egide.core.errors import DataError

Sampling = Literal["stratified", "random", "first"]
SAMPLINGS: tuple[str, ...] = get_args(Sampling)
DESCRIBED = {
    "stratified": "a seeded sample stratified by class",
    "random": "a seeded random sample",
    "first": "the first images in read order",
}


@dataclass
class Subset:
    """What a draw took: `images` of the `available` images of the split, per class, and the
    classes present in the split but absent from what was taken."""

    sampling: str
    seed: int
    requested: int
    available: int
    images: int
    class_counts: dict[str, int]  # of the taken images
    split_class_counts: dict[str, int]  # of the images it was drawn from
    missing: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # of the taken images, in the split's read order

    def to_dict(self) -> dict:
        return {"sampling": self.sampling, "seed": self.seed, "requested": self.requested,
                "available": self.available, "images": self.images,
                "class_counts": self.class_counts, "split_class_counts": self.split_class_counts,
                "missing_classes": self.missing, "text": self.sentence(), "warning": self.warning(),
                "indices": self.indices}

    @classmethod
    def from_dict(cls, d: dict) -> "Subset":
        return cls(d["sampling"], d["seed"], d["requested"], d["available"], d["images"], d["class_counts"],
                   d["split_class_counts"], list(d.get("missing_classes") or ()), list(d.get("indices") or ()))

    def sentence(self) -> str:
        """One line for people: how many of how many, how, and per class."""
        counts = ", ".join(f"{name} {n}" for name, n in self.class_counts.items())
        if self.images == self.available:
            return f"all {self.images} images: {counts}"
        seeded = f" (seed {self.seed})" if self.sampling != "first" else ""
        return (f"{self.images} of {self.available} images, {DESCRIBED[self.sampling]}{seeded}: "
                f"{counts}")

    def warning(self) -> str | None:
        """The classes of the split the taken images leave out, said so; None when none is."""
        if not self.missing:
            return None
        names = ", ".join(self.missing)
        why = ("the limit is smaller than the number of classes" if self.sampling == "stratified"
               else f"the limit took {DESCRIBED[self.sampling]}")
        return (f"the split has images of {names} but none of them is evaluated ({why}); "
                "its numbers cover the other classes only")


@dataclass
class Draw:
    """N images to take from a split: `indices(labels)` picks them and records `subset`."""

    n: int
    seed: int = 0
    sampling: str = "stratified"
    subset: Subset | None = field(default=None, init=False)

    def __post_init__(self):
        if self.sampling not in SAMPLINGS:
            raise DataError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise DataError(f"limit must be a positive number of images, got {self.n!r}")

    def indices(self, labels, class_names, exclude=None) -> np.ndarray:
        """Sorted indices of the images taken from `labels` (not those in `exclude`)."""
        y = np.asarray(labels, np.int64)
        available = np.ones(len(y), bool)
        if exclude is not None and len(exclude):
            available[np.asarray(exclude, np.int64)] = False
        pool = np.flatnonzero(available)
        picked = draw_indices(y, pool, int(self.n), int(self.seed), self.sampling, len(class_names))
        names = list(class_names)
        split_counts = np.bincount(y[pool], minlength=len(names))
        counts = np.bincount(y[picked], minlength=len(names))
        self.subset = Subset(
            sampling=self.sampling, seed=int(self.seed), requested=int(self.n), available=len(pool),
            images=len(picked),
            class_counts={n: int(c) for n, c in zip(names, counts)},
            split_class_counts={n: int(c) for n, c in zip(names, split_counts)},
            missing=[n for n, c, s in zip(names, counts, split_counts) if s > 0 and c == 0],
            indices=[int(i) for i in picked],
        )
        return picked


def draw_indices(y: np.ndarray, pool: np.ndarray, n: int, seed: int, sampling: str,
                 num_classes: int) -> np.ndarray:
    """n indices out of `pool` (indices into y), sorted; all of the pool when n covers it."""
    if n >= len(pool):
        return np.sort(pool)
    if sampling == "first":
        return np.sort(pool)[:n]
    if sampling == "random":
        return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))
    per_class = [np.sort(pool[y[pool] == c]) for c in range(num_classes)]
    take = _allocation(np.array([len(p) for p in per_class]), n)
    chosen = [
        # Each class has its own stream of (seed, class): one class's size never moves another's draw.
        np.random.default_rng([seed, c]).permutation(members)[:k]
        for c, (members, k) in enumerate(zip(per_class, take)) if k
    ]
    return np.sort(np.concatenate(chosen))


def _allocation(counts: np.ndarray, n: int) -> np.ndarray:
    """Images per class: n shared in proportion to counts, largest remainders first, at least one
    for every present class when n is at least the number of classes; never above a count."""
    total = int(counts.sum())
    quota = n * counts / total
    take = np.floor(quota).astype(np.int64)
    present = counts > 0
    if n >= int(present.sum()):
        take[present] = np.maximum(take[present], 1)
    while take.sum() > n:  # the minimum of one pushed the sum over: trim the most over-served
        over = np.where(take > 1, take - quota, -np.inf)
        take[int(np.argmax(over))] -= 1
    while take.sum() < n:  # hand out what is left to the largest remainders
        short = np.where(take < counts, quota - take, -np.inf)
        take[int(np.argmax(short))] += 1
    return take
