"""Synchronous prediction on uploaded images: decode (PNG, JPEG, a .npy float array, a DICOM
file or a NIfTI volume) within bounds, convert like the data loaders do (grayscale/RGB to the
model's channels, resized to its input, scaled to [0, 1]), and answer the label and softmax
confidences per image. For a model of 2-D images a multi-frame DICOM is predicted on its middle
frame, a NIfTI volume on its middle axial slice; a model of volumes reads a NIfTI volume whole
(or a .npy array (D, H, W[, C])) onto its grid, proportions kept, as the data loaders do.

Every bad upload is a 4xx problem naming the file; nothing here may become a 500."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from .problems import Problem, field_error, validation_problem

NPY_MAGIC = b"\x93NUMPY"
FORMATS = ("PNG", "JPEG")
# Every format /predict reads, as an error message lists them.
ACCEPTED = "a PNG or JPEG image, a DICOM file (.dcm), a NIfTI volume (.nii, .nii.gz) or a .npy array"


def _bad(index: int, filename: str, msg: str, type: str = "invalid_image") -> Problem:
    return validation_problem(
        [field_error(["image", index], msg, type, filename)], detail=f"{filename}: {msg}"
    )


def _too_big(filename: str, msg: str) -> Problem:
    return Problem(413, "Image too large", f"{filename}: {msg}", type="image-too-large", file=filename)


def decode(data: bytes, filename: str, index: int, channels: int, max_pixels: int) -> np.ndarray:
    """One upload as float32 (H, W, C) in [0, 1], C being 1 or 3 (or `channels` for arrays)."""
    if data.startswith(NPY_MAGIC):
        return _decode_npy(data, filename, index, channels, max_pixels)
    if data[128:132] == b"DICM" or filename.lower().endswith((".dcm", ".dicom")):
        return _decode_scan(data, filename, index, max_pixels, "dicom")
    if filename.lower().endswith((".nii", ".nii.gz")):
        return _decode_scan(data, filename, index, max_pixels, "nifti")
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise _too_big(filename, f"{w}x{h} pixels is more than the {max_pixels} allowed")
                im.load()
                if im.mode.startswith("I") or im.mode == "F":  # 16-bit/float grayscale: keep precision
                    top = 65535.0 if im.mode.startswith("I") else 1.0
                    pixels = np.clip(np.asarray(im, np.float32) / top, 0.0, 1.0)[..., None]
                else:
                    im = im.convert("L" if channels == 1 else "RGB")  # drops alpha, expands palettes
                    pixels = np.asarray(im, np.float32) / 255.0
    except Problem:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_big(filename, str(exc)) from None
    except Image.UnidentifiedImageError:
        raise _bad(index, filename, f"not a readable image: send {ACCEPTED} (or this file is corrupt)") from None
    except Exception as exc:  # Pillow raises many types for a broken file
        raise _bad(index, filename, f"a corrupt image ({type(exc).__name__}: {exc})") from None
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


@contextlib.contextmanager
def _as_file(data: bytes, filename: str, kind: str):
    """The upload written to a temporary file named as its reader expects (.dcm, .nii, .nii.gz)."""
    import tempfile
    from pathlib import Path

    suffix = ".dcm" if kind == "dicom" else (".nii.gz" if filename.lower().endswith(".gz") else ".nii")
    with tempfile.TemporaryDirectory(prefix="egide-scan-") as tmp:
        path = Path(tmp) / ("upload" + suffix)
        path.write_bytes(data)
        yield path


def _decode_scan(data: bytes, filename: str, index: int, max_pixels: int, kind: str) -> np.ndarray:
    """A DICOM file or NIfTI volume, read as the data loaders read them, within pixel bounds
    checked on the header before any pixel data is decoded."""
    from egide.lab.data import dicom, nifti

    with _as_file(data, filename, kind) as path:
        try:
            _check_scan_size(path, kind, max_pixels, filename)
            stack = dicom.read_dicom(path) if kind == "dicom" else nifti.read_nifti(path)
        except ValueError as exc:
            raise _bad(index, filename, f"a {'DICOM' if kind == 'dicom' else 'NIfTI'} file that could not be "
                       f"read: {exc}") from None
    return stack[len(stack) // 2]


def decode_volume(data: bytes, filename: str, index: int, channels: int,
                  max_voxels: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One upload for a model of volumes: float32 (D, H, W, C) in [0, 1] and its voxel size in mm
    (an array's voxels are taken as cubes). A NIfTI file or a .npy array; anything else is refused."""
    if data.startswith(NPY_MAGIC):
        volume = _decode_npy(data, filename, index, channels, max_voxels, dims=3)
        return volume, (1.0, 1.0, 1.0)
    if not filename.lower().endswith((".nii", ".nii.gz")):
        raise _bad(index, filename, "a model of volumes takes a NIfTI volume (.nii, .nii.gz) or a .npy "
                   "array (D, H, W) or (D, H, W, C) of floats in [0, 1]", "not_a_volume")
    from egide.lab.data import nifti

    with _as_file(data, filename, "nifti") as path:
        try:
            rows, cols, frames = nifti.nifti_size(path)
            if rows * cols * frames > max_voxels:
                raise _too_big(filename, f"{frames}x{rows}x{cols} voxels is more than the {max_voxels} allowed")
            return nifti.read_volume(path)
        except ValueError as exc:
            raise _bad(index, filename, f"a NIfTI file that could not be read: {exc}") from None


def fit_volume(volume: np.ndarray, spacing, input_shape: tuple[int, int, int, int]) -> np.ndarray:
    """volume (D, H, W, C) onto the model's (d, h, w, c) grid, proportions kept (`nifti.fit_volume`)."""
    from egide.lab.data.fitting import fit_volumes
    from egide.lab.data.nifti import fit_volume as onto_grid

    *size, c = input_shape
    if volume.shape[-1] != c and not {volume.shape[-1], c} <= {1, 3}:
        raise ValueError(f"cannot convert {volume.shape[-1]} channels to {c}")
    if volume.shape[:3] != tuple(size):
        volume = onto_grid(volume, spacing, tuple(size))
    return fit_volumes(volume[None], tuple(size), c)[0]  # the channels only: the grid fits


def _check_scan_size(path, kind: str, max_pixels: int, filename: str) -> None:
    """Refuse before decoding: a slice above the pixel budget, or a volume above 256 slices' worth."""
    from egide.lab.data import dicom, nifti

    rows, cols, frames = dicom.dicom_size(path) if kind == "dicom" else nifti.nifti_size(path)
    if rows * cols > max_pixels:
        raise _too_big(filename, f"{rows}x{cols} pixels per slice is more than the {max_pixels} allowed")
    if rows * cols * frames > 256 * max_pixels:
        raise _too_big(filename, f"{frames} slices of {rows}x{cols} pixels is more than 256 slices' worth")


def _decode_npy(data: bytes, filename: str, index: int, channels: int, max_pixels: int, dims: int = 2) -> np.ndarray:
    """An image (H, W[, C]) or, with dims=3, a volume (D, H, W[, C]); max_pixels bounds its pixels or voxels."""
    from numpy.lib import format as npy

    buf = io.BytesIO(data)
    try:
        version = npy.read_magic(buf)
        read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
        shape, _, dtype = read_header(buf)  # the header only: the shape before any data
    except Exception as exc:
        raise _bad(index, filename, f"a corrupt .npy file ({exc})") from None
    if len(shape) == dims:
        shape = (*shape, 1)
    axes = "(H, W)" if dims == 2 else "(D, H, W)"
    if len(shape) != dims + 1 or shape[-1] not in (1, 3):
        raise _bad(index, filename, f"an array {'image' if dims == 2 else 'volume'} must be {axes}, "
                   f"{axes[:-1]}, 1) or {axes[:-1]}, 3), got {shape}", "invalid_shape")
    if np.prod(shape[:-1]) > max_pixels:
        raise _too_big(filename, f"{'x'.join(map(str, shape[:-1]))} {'pixels' if dims == 2 else 'voxels'} is more "
                       f"than the {max_pixels} allowed")
    if dtype.kind != "f":
        raise _bad(index, filename, f"an array image must hold floats in [0, 1], got dtype {dtype}",
                   "invalid_dtype")
    try:
        buf.seek(0)
        x = np.load(buf, allow_pickle=False)
    except Exception as exc:
        raise _bad(index, filename, f"a corrupt .npy file ({exc})") from None
    x = np.asarray(x, np.float32).reshape(shape)
    if not np.isfinite(x).all() or x.min(initial=0.0) < 0.0 or x.max(initial=0.0) > 1.0:
        raise _bad(index, filename, "an array image must hold finite values in [0, 1] (for 8-bit "
                   "pixels: x / 255)", "out_of_range")
    return x


def fit(pixels: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """pixels (H, W, C) converted to the model's (h, w, c), as the data loaders convert files."""
    from egide.lab.data.fitting import fit_images as _fit_images

    h, w, c = input_shape
    if pixels.shape[-1] != c and not {pixels.shape[-1], c} <= {1, 3}:
        raise ValueError(f"cannot convert {pixels.shape[-1]} channels to {c}")
    return _fit_images(pixels[None].astype(np.float32), (h, w), c)[0]
