"""Where attacked images go, and what that means clinically.

The flip matrix counts, for one budget, each evaluated image by its true class (row) and the class
the model gave it under the worst-case attack (column); its diagonal holds the images that held.
With the negative class declared (the "no finding" class, e.g. `notumor`), an off-diagonal count
is one of two kinds of error a clinician tells apart:
  - a missed finding: a positive image (any tumour) called negative;
  - a false alarm: a negative image called positive;
and the rest (one finding called another, e.g. glioma -> meningioma) are wrong findings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Flips:
    classes: tuple[str, ...]
    counts: np.ndarray  # (K, K): true class x class under attack
    negative: str | None = None

    @property
    def images(self) -> int:
        return int(self.counts.sum())

    def _negative_index(self) -> int:
        if self.negative is None:
            raise ValueError("no negative class was declared: say which class means 'no finding'")
        return self.classes.index(self.negative)

    @property
    def missed_findings(self) -> int:
        """Positive images the attack made the model call negative."""
        k = self._negative_index()
        return int(self.counts[:, k].sum() - self.counts[k, k])

    @property
    def false_alarms(self) -> int:
        """Negative images the attack made the model call positive."""
        k = self._negative_index()
        return int(self.counts[k, :].sum() - self.counts[k, k])

    @property
    def wrong_findings(self) -> int:
        """Positive images called another positive class."""
        off_diagonal = self.counts.sum() - np.trace(self.counts)
        return int(off_diagonal - self.missed_findings - self.false_alarms)


def flip_matrix(y_true, y_attacked, classes, negative: str | None = None) -> Flips:
    """The counts of (true class, class under attack) over the images given."""
    classes = tuple(classes)
    y_true, y_attacked = np.asarray(y_true, dtype=np.int64), np.asarray(y_attacked, dtype=np.int64)
    if y_true.shape != y_attacked.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_attacked)} attacked predictions")
    k = len(classes)
    for name, y in (("true labels", y_true), ("attacked predictions", y_attacked)):
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"{name} outside 0..{k - 1}, the {k} classes {list(classes)}")
    if negative is not None and negative not in classes:
        raise ValueError(f"negative class '{negative}' is not one of the model's classes {list(classes)}")
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y_true, y_attacked), 1)
    return Flips(classes, counts, negative)
