"""Re-extract the whole-brain MNI152 volume behind `brain-tumor-phantom-3d` (dev time only).

The 3-D phantom is drawn on the same real brain MRI as the 2-D one (the MNI ICBM152 2009a
nonlinear symmetric T1 template inside the `nilearn` wheel on PyPI; `extract_mni_slices.py`
says more), but whole: a 192 mm cube at 4 mm voxels (48 x 48 x 48), area-averaged from the 1 mm
template, with a brain mask. It writes

    plugins/datasets/data/mni152_t1_volume.npz

in display order (axial slices from inferior to superior; rows anterior -> posterior; columns
from the patient's right to the patient's left, radiological), the order of the 2-D slices.

    python scripts/extract_mni_volume.py                 # pip download nilearn into a temp dir
    python scripts/extract_mni_volume.py --wheel nilearn-0.14.1-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract_mni_slices import MEMBER, box_matrix, read_template  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "plugins" / "datasets" / "data" / "mni152_t1_volume.npz"
SIZE = 48  # voxels per side
STEP_MM = 4.0  # 192 mm cube
CENTRE_MM = (0.0, -17.0, 6.0)  # (x, y, z): the middle of the brain's extent, cerebellum included


def extract(volume: np.ndarray, affine: np.ndarray) -> dict:
    scales = np.diag(affine)[:3]
    if not np.allclose(affine[:3, :3], np.diag(scales)) or (scales <= 0).any():
        raise ValueError("expected an axis-aligned RAS affine (positive diagonal)")
    axes_mm = [affine[a, 3] + scales[a] * np.arange(volume.shape[a]) for a in range(3)]
    half = STEP_MM * SIZE / 2
    steps = STEP_MM * np.arange(SIZE + 1)
    # Display order: z increasing (inferior -> superior), y decreasing (anterior at the top),
    # x decreasing (the patient's left on the image's right).
    edges = {
        "x": CENTRE_MM[0] + half - steps,
        "y": CENTRE_MM[1] + half - steps,
        "z": CENTRE_MM[2] - half + steps,
    }
    w_x, w_y, w_z = (box_matrix(axes_mm[a], scales[a], edges[name]) for a, name in enumerate("xyz"))

    def resample(data: np.ndarray) -> np.ndarray:  # [x, y, z] -> [z, y, x] display order
        return np.einsum("kz,jy,ix,xyz->kji", w_z, w_y, w_x, data, optimize=True)

    image = resample(volume.astype(np.float64))
    mask = resample((volume > 0).astype(np.float64)) >= 0.5
    top = np.percentile(image[mask], 99.9)
    centres = {name: (e[:-1] + e[1:]) / 2 for name, e in edges.items()}
    return {
        "volume": np.clip(np.round(image / top * 255.0), 0, 255).astype(np.uint8),
        "mask": mask,
        "spacing_mm": np.array([STEP_MM] * 3, np.float32),
        "z_mm": centres["z"].astype(np.float32),
        "y_mm": centres["y"].astype(np.float32),
        "x_mm": centres["x"].astype(np.float32),
    }


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
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): {SIZE}^3 voxels of {STEP_MM:g} mm, "
          f"{int(arrays['mask'].sum())} in the brain, from {Path(wheel).name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
