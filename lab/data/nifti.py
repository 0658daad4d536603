"""NIfTI volumes (through nibabel) as 2-D slices in [0, 1], or whole, for models of volumes.

A volume is turned to the closest RAS orientation first, so that "axial" means the same axis
whatever order the scanner stored it in (sagittal: x, coronal: y, axial: z); each slice is
rotated to the radiological display (anterior or superior up). Intensities have no fixed scale in
MRI, so each volume is scaled by robust percentiles of its own voxels (0.5 and 99.5 by default,
over the non-zero voxels when the background is zero) and clipped to [0, 1]. A 4-D file (a time
series, several volumes) gives the slices of each volume in turn. Slices without tissue (fewer
than 1% of the pixels above 5% of the range) are dropped when asked.

Whole (`read_volume`, slice_axis "volume", what a model of volumes gets): the volume in display
order, (D, H, W) = axial slices from inferior to superior, rows from anterior to posterior,
columns from the patient's right to left (radiological, as the 3-D phantom), scaled as above.
`fit_volume` then resamples it to a model's grid keeping its physical proportions: one voxel
size for all three axes, the largest the whole field of view fits in, centred, zero around it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".nii", ".nii.gz")
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
VOLUME = "volume"  # the slice axis that cuts nothing: one volume per file
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


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(volume (D, H, W, 1) float32 in [0, 1] in display order, its voxel size in mm along D, H, W);
    raises ValueError with a reason for a bad file."""
    import nibabel

    try:
        image = nibabel.load(str(path))
    except Exception as exc:
        raise ValueError(f"not a readable NIfTI file: {exc}") from None
    shape = tuple(int(d) for d in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape {shape}: a model of volumes needs one 3-D volume per file")
    try:
        image = nibabel.as_closest_canonical(image)  # voxel axes along +x (right), +y (anterior), +z (superior)
        data = np.asanyarray(image.dataobj).astype(np.float32).reshape(image.shape[:3])
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].replace(f" from {path}", "")
        raise ValueError(f"its voxel data could not be read ({reason}); the file may be truncated "
                         "or its header wrong") from None
    if not np.isfinite(data).all():
        raise ValueError("it holds NaN or Inf voxels")
    sx, sy, sz = (float(v) for v in image.header.get_zooms()[:3])
    # (x, y, z) -> (z, y, x), then anterior first (y falling) and the patient's right first (x falling).
    display = _scaled(data).transpose(2, 1, 0)[:, ::-1, ::-1]
    return np.ascontiguousarray(display, np.float32)[..., None], (sz, sy, sx)


def fit_volume(volume: np.ndarray, spacing, size) -> np.ndarray:
    """A (D, H, W, C) volume with voxel sizes `spacing` (mm) resampled onto a `size` grid with
    physical proportions kept: isotropic voxels, the whole field of view inside, centred."""
    from scipy import ndimage

    own = np.array(volume.shape[:3], float)
    spacing, size = np.asarray(spacing, float), np.asarray(size, float)
    voxel = float(np.max(own * spacing / size))  # mm per output voxel: the widest extent fills its axis
    step = voxel / spacing  # input voxels per output voxel, per axis
    # Output voxel centre i (mm from the grid's centre) -> input index, centres aligned.
    offset = (own - 1) / 2 - step * (size - 1) / 2
    out = [ndimage.affine_transform(volume[..., c], step, offset=offset, output_shape=tuple(size.astype(int)),
                                    order=1, mode="constant", cval=0.0) for c in range(volume.shape[-1])]
    return np.clip(np.stack(out, -1), 0.0, 1.0).astype(np.float32)


def _scaled(volume: np.ndarray) -> np.ndarray:
    """The volume mapped to [0, 1] by robust percentiles of its voxels."""
    voxels = volume[volume != 0] if np.mean(volume == 0) > 0.1 else volume.ravel()
    if voxels.size == 0:
        return np.zeros_like(volume)
    lo, hi = np.percentile(voxels, PERCENTILES)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0)
