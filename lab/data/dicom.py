"""DICOM files (through pydicom) as images in [0, 1], one per frame.

What a radiologist's viewer does, in order: the stored values through the modality rescale
(Rescale Slope/Intercept: CT's Hounsfield units), then the VOI window — a declared (centre,
width), else the first window stored in the file, else the file's own min..max — with the linear
function of DICOM PS3.3 C.11.2.1.2, and MONOCHROME1 (white = low) inverted so that tissue is always
bright. Colour images (RGB, or YCbCr that pydicom converts) are scaled by their bit depth.
Multi-frame files give one image per frame. Compressed pixel data is decoded by pydicom itself
(RLE; JPEG and JPEG 2000 through Pillow); a file it cannot decode is an error naming the file and
the transfer syntax.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".dcm", ".dicom")


def read_dicom(path: Path, window: tuple[float, float] | None = None) -> np.ndarray:
    """(frames, H, W, C) float32 in [0, 1]; raises ValueError with a reason for a bad file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise ValueError("not a DICOM file (no DICM preamble)") from None
    except Exception as exc:  # truncated headers and the like
        raise ValueError(f"not a readable DICOM file: {exc}") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        what = ds.get("Modality") or ds.get("SOPClassUID", "unknown object")
        raise ValueError(f"no pixel data (a DICOM {getattr(what, 'name', what)} object, not an image)")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax) or "unknown transfer syntax"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"pixel data could not be decoded ({name}): {first}") from None

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
    pixels = np.asarray(stored)
    if frames == 1:
        pixels = pixels[None]
    if not colour:
        pixels = pixels[..., None]
    if pixels.ndim != 4:
        raise ValueError(f"unexpected pixel array of shape {tuple(np.shape(stored))}")

    if colour:
        top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return np.clip(pixels.astype(np.float32) / top, 0.0, 1.0)
    values = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    centre, width = window or _stored_window(ds) or _full_range(values)
    scaled = _linear_window(values, centre, width)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def dicom_size(path: Path) -> tuple[int, int, int]:
    """(rows, columns, frames) from the header alone, before any pixel data is read."""
    import pydicom

    try:
        head = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise ValueError(f"not a readable DICOM file: {exc}") from None
    return (int(head.get("Rows", 0) or 0), int(head.get("Columns", 0) or 0),
            int(head.get("NumberOfFrames", 1) or 1))


def _stored_window(ds) -> tuple[float, float] | None:
    """The file's first VOI window (a file may store several), or None."""
    from pydicom.multival import MultiValue

    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is None or width is None:
        return None
    try:
        centre, width = (float(v[0] if isinstance(v, (MultiValue, list, tuple)) else v) for v in (centre, width))
    except (TypeError, ValueError, IndexError):
        return None
    return (centre, width) if width >= 1 else None


def _full_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    return (lo + hi) / 2 + 0.5, max(hi - lo + 1, 1.0)  # the window that spans lo..hi exactly


def _linear_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """DICOM's linear VOI function onto [0, 1] (PS3.3 C.11.2.1.2.1)."""
    if width <= 1:
        return (values > centre - 0.5).astype(np.float64)
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
