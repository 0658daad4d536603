"""Re-extract the axial MNI152 slices behind the `brain-tumor-phantom` data set (dev time only).

The phantom is drawn on a real brain MRI: the MNI ICBM152 2009a nonlinear symmetric T1
template, as shipped inside the `nilearn` wheel on PyPI. This script takes that wheel (or
downloads it with pip), reads the template from the wheel without installing nilearn, and writes

    plugins/datasets/data/mni152_t1_axial.npz

holding axial slices from the skull base (sellar level) up to the bodies of the lateral
ventricles every 2 mm, resampled in-plane to 1.5 mm pixels over a 192 mm square field of view (128x128),
with a brain mask per slice. Neither nilearn nor nibabel is needed at run time.

    python scripts/extract_mni_slices.py                 # pip download nilearn into a temp dir
    python scripts/extract_mni_slices.py --wheel nilearn-0.14.1-py3-none-any.whl

The output is deterministic for a given wheel: the same template gives the same bytes of data.
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "plugins" / "datasets" / "data" / "mni152_t1_axial.npz"
MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"

Z_RANGE_MM = (-32, 28)  # sellar level (pituitary) .. bodies of the lateral ventricles
Z_STEP_MM = 2  # every other 1 mm slice; the phantom interpolates between them
FOV_MM = 192.0  # square in-plane field of view
SIZE = 128  # pixels per side: 1.5 mm pixels
CENTRE_MM = (0.0, -17.0)  # (x, y) of the field of view: middle of the brain's extent in y

# NIfTI-1 datatype codes -> numpy dtypes (the ones a template may use)
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}


# ---- a small NIfTI-1 reader ----------------------------------------------------------------
def read_nifti(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(data indexed [i, j, k] as float32 with scl_slope/inter applied, 4x4 voxel->mm affine)."""
    if len(raw) < 352:
        raise ValueError("too short for a NIfTI-1 file")
    for endian in "<>":
        if np.frombuffer(raw[0:4], endian + "i4")[0] == 348:
            break
    else:
        raise ValueError("not a NIfTI-1 file: sizeof_hdr is not 348")

    def field(offset: int, code: str, count: int = 1) -> np.ndarray:
        return np.frombuffer(raw, endian + code, count, offset)

    magic = raw[344:348]
    if magic not in (b"n+1\x00", b"ni1\x00"):
        raise ValueError(f"bad NIfTI-1 magic {magic!r}")
    if magic != b"n+1\x00":
        raise ValueError("a header/image pair (.hdr/.img) is not supported; give a single .nii")
    dim = field(40, "i2", 8)
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        raise ValueError(f"bad dim[0] = {ndim}")
    shape = tuple(int(d) for d in dim[1 : ndim + 1])
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"expected a 3-D volume, got shape {shape}")
    datatype = int(field(70, "i2")[0])
    if datatype not in NIFTI_DTYPES:
        raise ValueError(f"unsupported NIfTI datatype code {datatype}")
    dtype = np.dtype(endian + NIFTI_DTYPES[datatype])
    pixdim = field(76, "f4", 8)
    vox_offset = int(field(108, "f4")[0])
    slope, inter = (float(v) for v in field(112, "f4", 2))
    qform_code, sform_code = (int(v) for v in field(252, "i2", 2))

    count = int(np.prod(shape))
    data = np.frombuffer(raw, dtype, count, vox_offset)
    # NIfTI stores voxels with i fastest (Fortran order).
    data = data.reshape(shape[::-1]).transpose(2, 1, 0).astype(np.float32)
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * (slope if slope != 0.0 else 1.0) + inter

    if sform_code > 0:
        affine = np.eye(4)
        affine[:3] = field(280, "f4", 12).reshape(3, 4)
    elif qform_code > 0:
        raise ValueError("only an sform affine is supported by this small reader")
    else:  # no orientation: voxel sizes only
        affine = np.diag([pixdim[1], pixdim[2], pixdim[3], 1.0])
    return data, affine


# ---- resampling ------------------------------------------------------------------------------
def box_matrix(src_mm: np.ndarray, src_step: float, dst_edges_mm: np.ndarray) -> np.ndarray:
    """Weights W (n_dst, n_src): each dst pixel is the area average of the src voxels it
    overlaps. dst_edges_mm may run either way (display axes run against the mm axes)."""
    lo = src_mm - src_step / 2
    hi = src_mm + src_step / 2
    a, b = dst_edges_mm[:-1, None], dst_edges_mm[1:, None]
    left, right = np.minimum(a, b), np.maximum(a, b)
    overlap = np.clip(np.minimum(right, hi) - np.maximum(left, lo), 0.0, None)
    return overlap / (right - left)


def extract(volume: np.ndarray, affine: np.ndarray) -> dict:
    scales = np.diag(affine)[:3]
    if not np.allclose(affine[:3, :3], np.diag(scales)) or (scales <= 0).any():
        raise ValueError("expected an axis-aligned RAS affine (positive diagonal)")
    origin = affine[:3, 3]
    x_mm = origin[0] + scales[0] * np.arange(volume.shape[0])
    y_mm = origin[1] + scales[1] * np.arange(volume.shape[1])
    z_mm = origin[2] + scales[2] * np.arange(volume.shape[2])
    wanted = np.arange(Z_RANGE_MM[0], Z_RANGE_MM[1] + Z_STEP_MM / 2, Z_STEP_MM)
    ks = np.array([int(np.argmin(abs(z_mm - z))) for z in wanted])
    if not np.allclose(z_mm[ks], wanted):
        raise ValueError(f"the template has no slices at z = {wanted} mm")

    step = FOV_MM / SIZE
    # Display orientation (radiological): rows run anterior -> posterior, columns run from the
    # patient's right to the patient's left.
    row_edges = CENTRE_MM[1] + FOV_MM / 2 - step * np.arange(SIZE + 1)  # y, decreasing
    col_edges = CENTRE_MM[0] + FOV_MM / 2 - step * np.arange(SIZE + 1)  # x, decreasing
    w_rows = box_matrix(y_mm, scales[1], row_edges)
    w_cols = box_matrix(x_mm, scales[0], col_edges)

    slices, masks = [], []
    for k in ks:
        plane = volume[:, :, k]  # [x, y]
        image = w_rows @ plane.T @ w_cols.T  # (rows: y, cols: x)
        inside = w_rows @ (plane.T > 0).astype(np.float64) @ w_cols.T
        slices.append(image)
        masks.append(inside >= 0.5)
    slices = np.stack(slices)
    masks = np.stack(masks)
    top = np.percentile(slices[masks], 99.9)
    slices_u8 = np.clip(np.round(slices / top * 255.0), 0, 255).astype(np.uint8)
    return {
        "slices": slices_u8,
        "mask": masks,
        "z_mm": z_mm[ks].astype(np.float32),
        "z_index": ks.astype(np.int16),
        "spacing_mm": np.array([step, step], np.float32),
        "row_y_mm": ((row_edges[:-1] + row_edges[1:]) / 2).astype(np.float32),
        "col_x_mm": ((col_edges[:-1] + col_edges[1:]) / 2).astype(np.float32),
    }


# ---- getting the wheel -----------------------------------------------------------------------
def download_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", str(into), "nilearn"],
        check=True,
    )
    [wheel] = sorted(into.glob("nilearn-*.whl"))
    return wheel


def read_template(wheel: Path | None) -> tuple[np.ndarray, np.ndarray, Path]:
    """(the template's voxels, its affine, the wheel it came from), downloading the wheel if None."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = wheel or download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            packed = archive.read(MEMBER)
    volume, affine = read_nifti(gzip.GzipFile(fileobj=io.BytesIO(packed)).read())
    return volume, affine, wheel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="a nilearn wheel (downloaded with pip if omitted)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output .npz (default {OUT})")
    args = parser.parse_args(argv)

    volume, affine, wheel = read_template(args.wheel)
    arrays = extract(volume, affine)
    arrays["source"] = np.array(f"{Path(wheel).name}:{MEMBER}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    n = len(arrays["slices"])
    z = arrays["z_mm"]
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): {n} axial slices, "
        f"z = {z[0]:g}..{z[-1]:g} mm, {SIZE}x{SIZE} at {FOV_MM / SIZE:g} mm, from {Path(wheel).name}"
    )
    notice = args.out.parent / "MNI152_NOTICE.txt"
    if notice.exists() and Path(wheel).name not in notice.read_text(encoding="utf-8"):
        print(f"note: {notice.name} names another nilearn wheel; update it to {Path(wheel).name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
