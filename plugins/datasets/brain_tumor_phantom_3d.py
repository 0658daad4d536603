"""`brain-tumor-phantom-3d`: whole brain MRI volumes with drawn tumours, generated from a seed.

The 3-D sibling of `brain-tumor-phantom`, for classifiers that read the whole volume. Every
volume starts from the same real T1-weighted brain MRI (the MNI ICBM152 2009a symmetric
template, skull-stripped; `data/MNI152_NOTICE.txt`), kept whole as a 192 mm cube of 4 mm voxels
(`scripts/extract_mni_volume.py`), and gets a lesion of its class drawn in three dimensions:

- glioma: an irregular intra-axial mass deep in a hemisphere's white matter, in a hypointense
  halo of oedema; high-grade ones have an enhancing rim around a dark necrotic core, low-grade
  ones are hypointense and do not enhance;
- meningioma: a round, homogeneously enhancing extra-axial mass on the brain's convexity,
  indenting the brain under it;
- pituitary: a small enhancing mass on the midline at the sella;
- notumor: no lesion.

Then scanner-like variation: rotation (±10° in the axial plane, ±5° of pitch), scale (±8%),
shift, a smooth multiplicative bias field, intensity gamma and Rician noise. Masses push the
tissue around them outwards. Volumes are (D, H, W, 1) in display order: axial slices from
inferior to superior, anterior at the top of each slice, the patient's left on its right.
This is a phantom for demonstrations and tests, not clinical data: no volume shows a patient.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from egide.core import DatasetSource, hookimpl
from egide.core.dataset import Dataset
from egide.core.errors import DataError
from egide.plugins.datasets.brain_tumor_phantom import (
    CLASS_NAMES,
    GLIOMA,
    MENINGIOMA,
    NOTUMOR,
    PITUITARY,
    SPLIT_FRACTIONS,
    WM,
    _split_counts,
)

TEMPLATE_FILE = "mni152_t1_volume.npz"
ZOOM = 0.92  # the brain fills most of the output cube, with room for the pose to move it
CHUNK = 64  # volumes rendered at once: bounds the temporaries
PITUITARY_MNI = (0.0, -3.0, -28.0)  # (x, y, z) mm: the midline, in front of the dorsum sellae


class BrainTumorPhantom3D(DatasetSource):
    """Brain MRI volumes (glioma, meningioma, no tumour, pituitary) drawn on the MNI152 T1."""

    name = "brain-tumor-phantom-3d"
    title = "Brain tumour MRI phantom, whole volumes"
    description = (
        "A realistic phantom for demonstration and testing, NOT clinical data: whole-brain T1 "
        "volumes of the MNI ICBM152 template with a glioma, meningioma or pituitary tumour drawn "
        "in 3-D (or none), plus scanner-like variation (pose, bias field, gamma, Rician noise). "
        "Generated offline and deterministically from a seed."
    )
    negative_class = "notumor"
    synthetic = True

    class Params(BaseModel, extra="forbid", frozen=True):
        volume_size: int = Field(32, ge=16, le=96, description="Voxels per side of the cubic volumes (1 channel)")
        per_class: int = Field(
            240, ge=20, le=2000,
            description="Volumes per class over all splits (70% train, 15% val, 15% test)",
        )
        seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed; the same seed gives the same volumes")

    def load(self, split: str | None = None) -> Dataset:
        if split is not None and split not in self.splits:
            raise DataError(
                f"{self.name} has the splits {', '.join(self.splits)}; got split={split!r} "
                "(or omit it for all volumes)"
            )
        p = self.params
        x, y, bounds = generate(p.volume_size, p.per_class, p.seed)
        lo, hi = bounds[split] if split is not None else (0, len(y))
        return Dataset(x[lo:hi], y[lo:hi], CLASS_NAMES)


@hookimpl
def egide_register_datasets(register):
    register(BrainTumorPhantom3D)


@functools.lru_cache(maxsize=2)
def generate(size: int, per_class: int, seed: int):
    """(x, y, {split: (start, stop)}), read-only: every volume, split by split, each shuffled."""
    x, y, bounds, _ = render_all(size, per_class, seed)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, bounds


def render_all(size: int, per_class: int, seed: int, truth: bool = False):
    """(x, y, bounds, lesion): the volumes as `generate` makes them, not cached; with truth=True
    also each volume's lesion opacity (N, D, H, W) in 0..1 (the volumes are the same either way)."""
    rng = np.random.default_rng([seed, 0x3D_4567])
    counts = _split_counts(per_class)
    labels = np.concatenate([
        rng.permutation(np.repeat(np.arange(len(CLASS_NAMES)), counts[split])) for split in SPLIT_FRACTIONS
    ]).astype(np.int64)
    bounds, start = {}, 0
    for split in SPLIT_FRACTIONS:
        bounds[split] = (start, start + counts[split] * len(CLASS_NAMES))
        start = bounds[split][1]

    template = _template()
    x = np.empty((len(labels), size, size, size, 1), np.float32)
    lesion = np.empty((len(labels), size, size, size), np.float32) if truth else None
    for start in range(0, len(labels), CHUNK):
        part = slice(start, start + CHUNK)
        volumes, alpha = _render(rng, labels[part], template, size)
        x[part, ..., 0] = volumes
        if truth:
            lesion[part] = alpha
    return x, labels, bounds, lesion


class _Template:
    """The stored volume, its brain mask, and where each kind of lesion may sit (template mm)."""

    def __init__(self, arrays):
        self.volume = arrays["volume"].astype(np.float32) / 255.0  # (Z, Y, X) display order
        self.mask = arrays["mask"].astype(bool)
        self.step = float(arrays["spacing_mm"][0])
        self.size = self.volume.shape[0]
        self.half = self.step * self.size / 2
        self.mni = (arrays["z_mm"].astype(np.float64), arrays["y_mm"].astype(np.float64),
                    arrays["x_mm"].astype(np.float64))
        depth = ndimage.distance_transform_edt(self.mask) * self.step  # mm inside the brain
        zz, yy, xx = np.meshgrid(*self.mni, indexing="ij")
        white = self.volume >= 0.8
        hemisphere = (depth >= 10) & (np.abs(xx) >= 12) & (zz > -20) & (zz < 50)
        self.glioma_sites = self.points(np.argwhere(hemisphere & white))
        # Convexity: the brain's outer surface above the skull base, away from the midline.
        surface = self.mask & (depth <= self.step) & (zz > -10) & (np.abs(xx) >= 15)
        self.convexity_sites = self.points(np.argwhere(surface))
        inward = np.stack(np.gradient(ndimage.gaussian_filter(self.mask.astype(np.float32), 1.5)), -1)
        norm = np.linalg.norm(inward, axis=-1, keepdims=True) + 1e-6
        self.convexity_inward = (inward / norm)[surface]
        self.sella = self.points(np.array([[np.interp(PITUITARY_MNI[2], self.mni[0], np.arange(self.size)),
                                            np.interp(-PITUITARY_MNI[1], -self.mni[1], np.arange(self.size)),
                                            np.interp(-PITUITARY_MNI[0], -self.mni[2], np.arange(self.size))]]))[0]

    def points(self, index: np.ndarray) -> np.ndarray:
        """Voxel indices (k, j, i) -> template display mm from the cube's centre (z, y, x)."""
        return (index + 0.5) * self.step - self.half

    def sample(self, field: np.ndarray, mm: np.ndarray) -> np.ndarray:
        """Trilinear samples of a template field at display mm (3, ...); zero outside the cube."""
        return ndimage.map_coordinates(field, mm / self.step + self.size / 2 - 0.5, order=1, cval=0.0)


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    path = resources.files("egide.plugins.datasets").joinpath("data", TEMPLATE_FILE)
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as archive:
        return _Template({name: archive[name] for name in archive.files})


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """Rotation of (z, y, x) display mm: yaw in the axial plane, then pitch about the left-right axis."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    in_plane = np.array([[1, 0, 0], [0, cy, -sy], [0, sy, cy]])
    nod = np.array([[cp, -sp, 0], [sp, cp, 0], [0, 0, 1]])
    return nod @ in_plane


def _lesion(rng: np.random.Generator, label: int, t: _Template) -> dict:
    """Where the lesion sits (template mm), how big, and how it looks."""
    if label == GLIOMA:
        centre = t.glioma_sites[rng.integers(len(t.glioma_sites))] + rng.uniform(-2, 2, 3)
        high_grade = rng.random() < 0.6
        return dict(centre=centre, radius=rng.uniform(9, 18), push=rng.uniform(0.2, 0.45), oedema=rng.uniform(1.4, 2.0),
                    bright=1.12 if high_grade else 0.62, core=0.35, necrosis=rng.uniform(0.45, 0.7) if high_grade else 0.0)
    if label == MENINGIOMA:
        pick = rng.integers(len(t.convexity_sites))
        radius = rng.uniform(9, 16)
        # Centred just outside the brain's surface: the mass sits on the dura and indents the brain.
        centre = t.convexity_sites[pick] - t.convexity_inward[pick] * radius * rng.uniform(0.1, 0.35)
        return dict(centre=centre, radius=radius, push=rng.uniform(0.35, 0.6), oedema=0.0, bright=1.18, core=1.18,
                    necrosis=0.0)
    if label == PITUITARY:
        return dict(centre=t.sella + rng.uniform(-2, 2, 3), radius=rng.uniform(5, 9), push=0.2, oedema=0.0,
                    bright=1.1, core=1.1, necrosis=0.0)
    return dict(centre=np.zeros(3), radius=1.0, push=0.0, oedema=0.0, bright=1.0, core=1.0, necrosis=0.0)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _render(rng: np.random.Generator, labels: np.ndarray, t: _Template, size: int):
    """Volumes (n, S, S, S) in [0, 1] and their lesion opacity, one at a time (each is small)."""
    grid = ((np.arange(size) + 0.5) / size * 2 - 1) * t.half * ZOOM
    out = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"))  # (3, S, S, S) output mm (z, y, x)
    flat = out.reshape(3, -1)
    volumes = np.empty((len(labels), size, size, size), np.float32)
    alphas = np.zeros_like(volumes)
    for n, label in enumerate(labels):
        rotate = _rotation(rng.uniform(-1, 1) * np.radians(10), rng.uniform(-1, 1) * np.radians(5))
        mm = (rotate @ flat) / rng.uniform(0.92, 1.08) + rng.uniform(-6, 6, (3, 1))  # template mm per voxel
        p = _lesion(rng, int(label), t)
        d = mm - p["centre"][:, None]
        r = np.linalg.norm(d, axis=0)
        # An irregular outline: three random plane waves at about the lesion's own scale.
        waves = rng.normal(size=(3, 3))
        phases = rng.uniform(0, 2 * np.pi, 3)
        rough = np.cos((waves / p["radius"]) @ d + phases[:, None]).sum(0) / 3
        rt = r / p["radius"] + (0.12 if label == GLIOMA else 0.04) * rough  # < 1 inside the lesion
        # Mass effect: sample the template nearer the centre, so tissue moves outwards.
        squeeze = 1.0 - p["push"] * p["radius"] ** 2 / (r**2 + p["radius"] ** 2)
        warped = p["centre"][:, None] + d * squeeze if label != NOTUMOR else mm
        base = t.sample(t.volume, warped)
        brain = t.sample(t.mask.astype(np.float32), warped)
        inside = _sigmoid((1.0 - rt) / 0.08) * (label != NOTUMOR)
        if label == GLIOMA:
            inside *= np.clip(brain * 1.2, 0, 1)
            halo = _sigmoid((p["oedema"] - rt) / 0.15) * brain
            white = np.clip((base - 0.55) / 0.35, 0.0, 1.0)
            base = base * (1.0 - 0.35 * halo * (0.35 + 0.65 * white))
        elif label == MENINGIOMA:
            intracranial = t.sample(ndimage.binary_dilation(t.mask, iterations=2).astype(np.float32), mm)
            inside *= np.clip(intracranial * 1.5, 0, 1)
        rim = _sigmoid((rt - p["necrosis"]) / 0.08)
        level = WM * np.where(p["necrosis"] > 0, p["core"] + (p["bright"] - p["core"]) * rim, p["bright"])
        image = base * (1.0 - inside) + level * inside

        # Scanner: a smooth bias field, windowing, gamma and Rician noise.
        unit = flat / (t.half * ZOOM)
        image *= np.exp(rng.normal(0, 0.08, 3) @ unit + rng.normal(0, 0.04) * (unit[1] ** 2 - 0.33))
        top = max(np.quantile(image, 0.995), 1e-3)
        image = np.clip(image / top, 0.0, None) ** rng.uniform(0.85, 1.15) * rng.uniform(0.9, 1.0)
        sigma = rng.uniform(0.015, 0.045)
        real = image + sigma * rng.standard_normal(image.shape)
        imag = sigma * rng.standard_normal(image.shape)
        volumes[n] = np.clip(np.hypot(real, imag), 0.0, 1.0).reshape(size, size, size)
        alphas[n] = inside.reshape(size, size, size)
    return volumes, alphas
