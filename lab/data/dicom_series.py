"""A DICOM series (one folder per study, one file per slice) read as one volume, for models of volumes.

The slices are the folder's DICOM files, all of one series (one SeriesInstanceUID: a folder mixing
series is refused, with the count of each). Each slice's place is its Image Position (Patient)
projected on the normal of its Image Orientation (Patient), and the slices are stacked in that
order; slices that differ in orientation or size, two at one place, or a gap (a step over 1.5
times the usual one: a missing slice) are refused with what is wrong. The voxel size is the Pixel
Spacing in plane and the median step between slices across.

The stack is then turned to display order, as NIfTI volumes are (`nifti.read_volume`): axial
slices from inferior to superior, rows from anterior to posterior, columns from the patient's right
to left; each voxel axis goes to the patient axis (DICOM's LPS) it lies closest to, so sagittal and
coronal acquisitions come out the same way round. Intensities: the modality rescale (Rescale
Slope/Intercept), then one VOI window for the whole volume — the one asked for, else the first
slice's stored window, else robust percentiles of the volume as NIfTI volumes get — and
MONOCHROME1 inverted so tissue is bright. Enhanced (multi-frame) files and colour are refused.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np

from . import dicom, nifti

GAP = 1.5  # a step between slices this many times the median one is a missing slice


def is_series(folder: Path) -> bool:
    """A folder holding DICOM files directly: one study's series."""
    return folder.is_dir() and any(_slices(folder))


def read_series(folder: Path, window: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(volume (D, H, W, 1) float32 in [0, 1] in display order, its voxel size in mm along D, H, W);
    raises ValueError with a reason for a folder that is not one readable series."""
    import pydicom

    files = _slices(folder)
    if len(files) < 2:
        raise ValueError(f"{len(files)} DICOM file: a volume needs at least 2 slices")
    slices = []
    for path in files:
        try:
            slices.append(pydicom.dcmread(path))
        except Exception as exc:
            raise ValueError(f"{path.name}: not a readable DICOM file ({exc})") from None
    series = Counter(str(ds.get("SeriesInstanceUID", "?")) for ds in slices)
    if len(series) > 1:
        counts = ", ".join(f"{n} of {uid}" for uid, n in series.most_common(4))
        raise ValueError(f"it mixes {len(series)} series ({counts}); keep one series per study folder")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in slices):
        raise ValueError("an enhanced (multi-frame) DICOM file: convert the series to NIfTI (e.g. with "
                         "dcm2niix) or to one file per slice")
    if any(int(ds.get("SamplesPerPixel", 1) or 1) > 1 for ds in slices):
        raise ValueError("a colour series: a model of volumes reads grayscale scans")
    try:
        orientation = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in slices])
        position = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in slices])
        in_plane = np.array([[float(v) for v in ds.PixelSpacing] for ds in slices])
    except AttributeError as exc:
        tag = str(exc).split("'")[-2] if "'" in str(exc) else "a geometry tag"
        raise ValueError(f"a slice without {tag}: where it lies in the volume is unknown") from None
    if np.abs(orientation - orientation[0]).max() > 1e-3:
        raise ValueError("its slices are not all in one orientation (a localizer or another view mixed in?)")
    if len({(int(ds.Rows), int(ds.Columns)) for ds in slices}) > 1 or np.ptp(in_plane, axis=0).max() > 1e-3:
        raise ValueError("its slices differ in size or pixel spacing")

    row, col = orientation[0, :3], orientation[0, 3:]  # directions of increasing column, row index
    normal = np.cross(row, col)
    depth = position @ normal
    order = np.argsort(depth, kind="stable")
    steps = np.diff(depth[order])
    step = float(np.median(steps))
    if steps.min() < 1e-3 * max(step, 1e-3):
        raise ValueError("two slices lie at the same place: two acquisitions mixed in one folder?")
    if steps.max() > GAP * step:
        raise ValueError(f"a gap between slices (a step of {steps.max():.3g} mm where the others are "
                         f"{step:.3g} mm): a slice is missing")

    first = slices[order[0]]
    values = np.stack([np.asarray(slices[i].pixel_array, np.float64) * float(slices[i].get("RescaleSlope", 1) or 1)
                       + float(slices[i].get("RescaleIntercept", 0) or 0) for i in order])
    chosen = window or dicom._stored_window(first)
    scaled = dicom._linear_window(values, *chosen) if chosen else nifti._scaled(values)
    if first.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled

    # Voxel axes (slice, row, column) run along normal, col, row; display D, H, W along LPS z, y, x.
    axes = np.stack([normal, col, row])
    sizes = (step, float(in_plane[0, 0]), float(in_plane[0, 1]))
    target = (2, 1, 0)
    best = max(itertools.permutations(range(3)), key=lambda p: sum(abs(axes[p[i], target[i]]) for i in range(3)))
    volume = scaled.transpose(best)
    for i in range(3):
        if axes[best[i], target[i]] < 0:  # LPS: z up (superior), y to posterior, x to the patient's left
            volume = np.flip(volume, axis=i)
    spacing = tuple(sizes[best[i]] for i in range(3))
    return np.ascontiguousarray(volume, np.float32)[..., None], spacing


def _slices(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(dicom.SUFFIXES))
