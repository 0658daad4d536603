"""NIfTI volumes (through nibabel) as 2-D slices in [0, 1].

A volume is turned to the closest RAS orientation first, so that "axial" means the same axis
whatever order the scanner stored it in (sagittal: x, coronal: y, axial: z); each slice is
rotated to the radiological display (anterior or superior up). Intensities have no fixed scale in
MRI, so each volume is scaled by robust percentiles of its own voxels (0.5 and 99.5 by default,
over the non-zero voxels when the background is zero) and clipped to [0, 1]. A 4-D file (a time
series, several volumes) gives the slices of each volume in turn. Slices without tissue (fewer
than 1% of the pixels above 5% of the range) are dropped when asked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".nii", ".nii.gz")
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
PERCENTILES = (0.5, 99.5)
TISSUE_LEVEL = 0.05  # a pixel above this share of the range is tissue ...
TISSUE_SHARE = 0.01  # ... and a slice with fewer such pixels than this share has none


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def nifti_size(path: Path) -> tuple[int, int, int]:
    """(rows, columns, slices) of the largest possible cut, from the header alone."""
    import nibabel

    try:
        shape = tuple(int(d) for d in nibabel.load(str(path)).shape)
    except Exception as exc:
        raise ValueError(f"not a readable NIfTI file: {exc}") from None
    dims = sorted(shape[:3], reverse=True) + [1, 1]
    return dims[0], dims[1], int(np.prod(shape)) // max(dims[0] * dims[1], 1)


def read_nifti(path: Path, axis: str = "axial", skip_empty: bool = False) -> np.ndarray:
    """(slices, H, W, 1) float32 in [0, 1]; raises ValueError with a reason for a bad file."""
    import nibabel

    if axis not in AXES:
        raise ValueError(f"slice axis must be one of {', '.join(AXES)}, got {axis!r}")
    try:
        image = nibabel.load(str(path))
    except Exception as exc:  # nibabel raises many types for a file that is not NIfTI
        raise ValueError(f"not a readable NIfTI file: {exc}") from None
    if image.ndim not in (2, 3, 4):
        raise ValueError(f"a {image.ndim}-D image: expected a 2-D slice, a 3-D volume or a 4-D series")
    try:
        if image.ndim >= 3:
            image = nibabel.as_closest_canonical(image)
        data = np.asanyarray(image.dataobj).astype(np.float32)  # applies scl_slope / scl_inter
    except Exception as exc:  # a header that promises more voxels than the file holds
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].replace(f" from {path}", "")
        raise ValueError(f"its voxel data could not be read ({reason}); the file may be truncated "
                         "or its header wrong") from None
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim == 3:
        data = data[..., None]
    if not np.isfinite(data).all():
        raise ValueError("it holds NaN or Inf voxels")

    slices = []
    for t in range(data.shape[3]):
        volume = _scaled(data[..., t])
        moved = np.moveaxis(volume, AXES[axis] if data.shape[2] > 1 else 2, 0)
        for cut in moved:
            cut = np.rot90(cut)  # (x, y) -> rows from anterior/superior down
            if skip_empty and np.mean(cut > TISSUE_LEVEL) < TISSUE_SHARE:
                continue
            slices.append(cut)
    if not slices:
        raise ValueError("no slice with tissue (every slice was empty)" if skip_empty else "no slices")
    return np.stack(slices)[..., None].astype(np.float32)


def _scaled(volume: np.ndarray) -> np.ndarray:
    """The volume mapped to [0, 1] by robust percentiles of its voxels."""
    voxels = volume[volume != 0] if np.mean(volume == 0) > 0.1 else volume.ravel()
    if voxels.size == 0:
        return np.zeros_like(volume)
    lo, hi = np.percentile(voxels, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0)
