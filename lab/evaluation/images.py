"""Which images an evaluation attacks, and which ones its detectors are fitted on.

The evaluated images are the split's, or `limit` of them drawn by `sampling` under the seed
(stratified by class by default: a folder stored class by class must not give one class).

Detectors are fitted on held-out images, never on the evaluated ones:
- `detector_fit_split` names a split: its images (at most `detector_fit_limit`, stratified);
- empty: the data's validation split if it has one;
- else (or when the named split is the evaluated one): a stratified part of the evaluated split
  is held out. With a limit that leaves enough images, the evaluated sample is drawn first, as
  without detectors, and the held-out part from the rest; otherwise a third of the split (at most
  `detector_fit_limit`) is held out first and the evaluated images come from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from egide.core.dataset import Dataset
from egide.core.errors import DataError, InputError
from egide.lab.data import Draw, Subset, drawn
from egide.lab.data.splits import canonical, match

MIN_FIT_IMAGES = 16  # fewer images cannot place a threshold at a 5% false-positive rate
HELD_OUT_SHARE = 3  # without a limit, a third of the split is held out for the detectors


@dataclass
class DataSource:
    """Where an evaluation's images come from: the data's splits, and a loader of one split
    (optionally with a Draw, so a folder of PNGs decodes only the drawn files)."""

    name: str
    splits: list[str]
    load: Callable[[str | None, Draw | None], Dataset]
    mixed_sizes: list = field(default_factory=list)  # filled by a loader that resized scans
    fit_split: str | None = None  # the split detectors are fitted on unless the config names one


@dataclass
class EvaluationImages:
    """The evaluated images and how they were drawn; the detectors' fit images and their origin."""

    data: Dataset
    subset: Subset | None
    fit: Dataset | None = None
    fit_origin: dict | None = None


def local_source(data: str, clf, registry=None, *, window=None, slice_axis: str = "axial",
                 skip_empty_slices: bool = False) -> DataSource:
    """The data set `data` (a name, a file or a folder) read from disk or a data-set plugin of
    `registry`, scans read with the given options and resized to `clf`'s input."""
    from egide.lab.data import available_splits, load_for_model

    source = DataSource(data, [], None)
    try:
        source.splits = available_splits(data, registry, volumes=len(clf.input_shape) == 4)
    except DataError:
        source.splits = []  # the load below reports the problem with the data itself

    def load(split, draw=None):
        loaded, sizes = load_for_model(data, clf, split=split, draw=draw, window=window, slice_axis=slice_axis,
                                       skip_empty_slices=skip_empty_slices, registry=registry)
        if sizes:
            source.mixed_sizes.append(sizes)
        return loaded

    source.load = load
    return source


def in_memory_source(name: str, split: str | None, dataset: Dataset, fit_dataset: Dataset | None) -> DataSource:
    """Data sets a caller already holds: the evaluated split and, optionally, the fit images."""
    fit = "detector-fit" if fit_dataset is not None else None
    splits = [split or "given"] + ([fit] if fit else [])

    def load(wanted, draw=None):
        return drawn(fit_dataset if wanted == fit else dataset, draw)

    return DataSource(name, splits, load, fit_split=fit)


def fit_split_of(config, splits: list[str], default: str | None = None) -> str | None:
    """The split detectors are fitted on, or None to hold out part of the evaluated split."""
    wanted = config.detector_fit_split or default
    if wanted:
        found = match(wanted, splits)
        if found is None:
            have = ", ".join(splits) if splits else "none"
            raise InputError(f"detector_fit_split: the data has no '{wanted}' split (its splits: {have}); "
                             "leave it empty to hold out part of the evaluated split")
    else:
        found = match("val", splits)
    if found is not None and config.split and canonical(found) == canonical(config.split):
        return None  # the evaluated split itself: hold out part of it
    return found


def choose_images(config, source: DataSource, needs_fit: bool) -> EvaluationImages:
    """The evaluated images (and, when detectors need them, the held-out fit images)."""
    fit_split = fit_split_of(config, source.splits, source.fit_split) if needs_fit else None
    if needs_fit and fit_split is None:
        return _held_out(config, source)
    draw = Draw(config.limit, config.seed, config.sampling) if config.limit else None
    data = source.load(config.split, draw)
    chosen = EvaluationImages(data, draw.subset if draw else None)
    if needs_fit:
        fit_draw = Draw(config.detector_fit_limit, config.seed) if config.detector_fit_limit else None
        chosen.fit = source.load(fit_split, fit_draw)
        chosen.fit_origin = {"split": fit_split, "held_out": False, "images": len(chosen.fit),
                             "of": fit_draw.subset.available if fit_draw else len(chosen.fit),
                             "sampling": "stratified", "seed": config.seed}
    return chosen


def held_out_plan(config, total: int) -> tuple[bool, int]:
    """(whether the evaluated sample is drawn first, how many images are held out) for a split of
    `total` images that the detectors must be fitted on a part of."""
    most = config.detector_fit_limit or total
    if config.limit and total - min(config.limit, total) >= MIN_FIT_IMAGES:
        return True, min(most, total - config.limit)
    return False, max(1, min(most, total // HELD_OUT_SHARE))


def held_out_problem(config, total: int) -> str | None:
    """Why `total` images cannot give the detectors a held-out part (None when they can)."""
    if held_out_plan(config, total)[1] >= MIN_FIT_IMAGES:
        return None
    return (f"the '{config.split}' split has {total} images, too few to hold out {MIN_FIT_IMAGES} for fitting "
            f"the detectors (it needs {MIN_FIT_IMAGES * HELD_OUT_SHARE}, or a limit that leaves "
            f"{MIN_FIT_IMAGES}); name another split with detector_fit_split")


def _held_out(config, source: DataSource) -> EvaluationImages:
    full = source.load(config.split, None)
    y, names, total = full.y, full.class_names, len(full)
    problem = held_out_problem(config, total)
    if problem:
        raise InputError(f"detector_fit_split: {problem}")
    evaluated_first, count = held_out_plan(config, total)
    if evaluated_first:
        evaluated_draw = Draw(config.limit, config.seed, config.sampling)
        evaluated = evaluated_draw.indices(y, names)
        fit_draw = Draw(count, config.seed)
        fit = fit_draw.indices(y, names, exclude=evaluated)
    else:
        fit_draw = Draw(count, config.seed)
        fit = fit_draw.indices(y, names)
        evaluated_draw = Draw(config.limit or total, config.seed, config.sampling)
        evaluated = evaluated_draw.indices(y, names, exclude=fit)
    assert not np.intersect1d(fit, evaluated).size  # held out means never evaluated
    return EvaluationImages(
        full.subset(evaluated), evaluated_draw.subset, full.subset(fit),
        {"split": config.split, "held_out": True, "images": len(fit), "of": total,
         "sampling": "stratified", "seed": config.seed,
         "class_counts": fit_draw.subset.class_counts, "indices": [int(i) for i in fit]})
