"""`brain-tumor-phantom`: brain MRI slices with drawn tumours, generated offline from a seed.

Every image starts from a real T1-weighted brain MRI, the MNI ICBM152 2009a symmetric template
(skull-stripped; `data/MNI152_NOTICE.txt`), sampled at a random axial level between the sella
turcica and the bodies of the lateral ventricles. A lesion of the image's class is drawn into
it, with the look of a contrast-enhanced T1 scan:

- glioma: an irregular intra-axial mass inside the parenchyma, mostly in a hemisphere's white
  matter, in a halo of hypointense vasogenic oedema; high-grade ones have an enhancing rim
  around a dark necrotic centre, low-grade ones are hypointense and do not enhance;
- meningioma: a round, sharply outlined, homogeneously enhancing extra-axial mass with a broad
  base on the inner table of the skull (convexity) or on the falx, a thin CSF cleft between it
  and the brain it indents, and often a thin dural tail;
- pituitary: a small enhancing mass on the midline at the sella, only on the skull-base slices;
- notumor: no lesion.

Then scanner-like variation: in-plane rotation (±10°), scale (±8%) and shift, slice level, a
smooth multiplicative bias field, intensity gamma, and Rician noise (the magnitude of complex
Gaussian noise). Lesions push the surrounding tissue aside (mass effect). Everything is numpy,
vectorised over images, and deterministic under the seed.

Display convention: radiological (the patient's left on the image's right), anterior at the top.
This is a phantom for demonstrations and tests, not clinical data: no image shows a patient.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
from pydantic import BaseModel, Field

from egide.core import DatasetSource, hookimpl
from egide.core.dataset import Dataset
from egide.core.errors import DataError

CLASS_NAMES = ("glioma", "meningioma", "notumor", "pituitary")
GLIOMA, MENINGIOMA, NOTUMOR, PITUITARY = range(4)
SPLIT_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
TEMPLATE_FILE = "mni152_t1_axial.npz"

WM = 0.93  # white-matter level of the stored template (uint8 / 255); lesion contrasts refer to it
ZOOM = 0.97  # mean zoom on the stored field of view (the brain fills most of the frame)
MARGIN_MM = 3.0  # the brain always stays this far inside the frame
CHUNK = 256  # images rendered at once: bounds the temporaries to a few tens of MB

# Axial levels (MNI z, mm) each class is drawn on. The sella is on the lowest slices only.
SELLAR_Z = (-32.0, -18.0)
GLIOMA_Z = (-24.0, 28.0)
# The pituitary sits on the midline just in front of the dorsum sellae (MNI y, mm).
SELLA_Y = -3.0


class BrainTumorPhantom(DatasetSource):
    """Brain MRI phantom (glioma, meningioma, no tumour, pituitary) drawn on the MNI152 T1."""

    name = "brain-tumor-phantom"
    title = "Brain tumour MRI phantom"
    description = (
        "A realistic phantom for demonstration and testing, NOT clinical data: axial T1 slices "
        "of the MNI ICBM152 brain template with a drawn glioma, meningioma or pituitary tumour "
        "(or none), plus scanner-like variation (pose, bias field, gamma, Rician noise). "
        "Generated offline and deterministically from a seed; the four class names match the "
        "public brain-tumour MRI collections."
    )
    negative_class = "notumor"  # the class that means "no finding" (a robustness card's clinical roles)
    synthetic = True  # generated images, not patient scans (a card says so)

    class Params(BaseModel, extra="forbid", frozen=True):
        image_size: int = Field(
            64, ge=16, le=128, description="Side of the square images, in pixels (1 channel)"
        )
        per_class: int = Field(
            600, ge=20, le=5000,
            description="Images per class over all splits (70% train, 15% val, 15% test)",
        )
        seed: int = Field(0, ge=0, le=2**32 - 1, description="Random seed; the same seed gives the same images")

    def load(self, split: str | None = None) -> Dataset:
        if split is not None and split not in self.splits:
            raise DataError(
                f"{self.name} has the splits {', '.join(self.splits)}; got split={split!r} "
                "(or omit it for all images)"
            )
        p = self.params
        x, y, bounds = generate(p.image_size, p.per_class, p.seed)
        lo, hi = bounds[split] if split is not None else (0, len(y))
        return Dataset(x[lo:hi], y[lo:hi], CLASS_NAMES)


@hookimpl
def egide_register_datasets(register):
    register(BrainTumorPhantom)


# ---- the data set ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def generate(image_size: int, per_class: int, seed: int):
    """(x, y, {split: (start, stop)}): every image, split by split, each split shuffled.

    The arrays are read-only, because they are cached and shared between loads.
    """
    x, y, bounds, _ = render_all(image_size, per_class, seed)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, bounds


def render_all(image_size: int, per_class: int, seed: int, truth: bool = False):
    """(x, y, bounds, truth): the images as `generate` makes them, not cached.

    With truth=True, also where each lesion was drawn, per image and pixel: `lesion` (its
    opacity, 0..1), `brain` (the brain mask as displayed), and `mni_x`, `mni_y`, `mni_z`: the
    MNI coordinates (mm) of the pixel before the lesion's mass effect. The images are the same
    either way.
    """
    rng = np.random.default_rng([seed, 0x4567_6964])  # one stream, fixed order of draws
    counts = _split_counts(per_class)
    labels, split_of = [], []
    for label in range(len(CLASS_NAMES)):
        for index, split in enumerate(SPLIT_FRACTIONS):
            labels += [label] * counts[split]
            split_of += [index] * counts[split]
    labels = np.array(labels, np.int64)
    split_of = np.array(split_of)
    # Order: train, val, test; the classes are shuffled within each split.
    order = np.concatenate([rng.permutation(np.nonzero(split_of == i)[0]) for i in range(3)])
    labels = labels[order]

    template = _template()
    lesions = _draw_lesions(rng, labels, template)
    n = len(labels)
    x = np.empty((n, image_size, image_size, 1), np.float32)
    found = {}
    if truth:
        names = ("lesion", "brain", "mni_x", "mni_y", "mni_z")
        found = {name: np.empty((n, image_size, image_size), np.float32) for name in names}
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        into = {name: array[part] for name, array in found.items()} or None
        x[part, ..., 0] = _render(rng, {k: v[part] for k, v in lesions.items()}, image_size, into)

    bounds, start = {}, 0
    for split in SPLIT_FRACTIONS:
        bounds[split] = (start, start + counts[split] * len(CLASS_NAMES))
        start = bounds[split][1]
    return x, labels, bounds, found


def _split_counts(per_class: int) -> dict[str, int]:
    val = int(round(per_class * SPLIT_FRACTIONS["val"]))
    test = int(round(per_class * SPLIT_FRACTIONS["test"]))
    return {"train": per_class - val - test, "val": val, "test": test}


# ---- the template --------------------------------------------------------------------------------
class _Template:
    """The stored slices and what placement needs from them, in display millimetres.

    Display millimetres (u, v): u grows to the image's right (patient's left), v grows down
    (posterior); (0, 0) is the centre of the stored field of view.
    """

    def __init__(self, arrays):
        self.slices = arrays["slices"].astype(np.float32) / 255.0  # (Z, 128, 128)
        self.mask = arrays["mask"].astype(bool)
        self.z_mm = arrays["z_mm"].astype(np.float64)
        self.spacing = float(arrays["spacing_mm"][0])
        self.size = self.slices.shape[1]
        self.fov = self.spacing * self.size
        self.centre_x = float(arrays["col_x_mm"].mean())  # MNI x at u = 0
        self.centre_y = float(arrays["row_y_mm"].mean())  # MNI y at v = 0
        centres = (np.arange(self.size) + 0.5) * self.spacing - self.fov / 2
        self.v, self.u = np.meshgrid(centres, centres, indexing="ij")
        self.mni_x = self.centre_x - self.u
        self.mni_y = self.centre_y - self.v

        # Depth inside the brain (mm), and the brain's outer surface (reached from outside).
        self.depth = _depth(self.mask) * self.spacing
        outside = _flood_from_border(~self.mask)
        self.dura = _dilate(~outside, 1)  # inner table of the skull: the filled brain, +1.5 mm
        self.dura_depth = _depth(self.dura) * self.spacing
        smooth = _blur(self.mask.astype(np.float32), 2.0)
        gv, gu = np.gradient(smooth, axis=(1, 2))
        norm = np.hypot(gu, gv) + 1e-6
        self.inward = np.stack([gu / norm, gv / norm], -1)  # (Z, H, W, 2): into the brain

        # How far the brain reaches from the centre of the field of view, per slice (mm).
        self.reach = np.array([np.hypot(self.u[m], self.v[m]).max() + self.spacing for m in self.mask])

        self.glioma_sites, self.convexity_sites, self.falx_sites = [], [], []
        for k, z in enumerate(self.z_mm):
            mask = self.mask[k]
            posterior_fossa = (z < -6) & ((self.mni_y < -42) | (np.abs(self.mni_x) < 18))
            deep = (self.depth[k] >= 9) & (np.abs(self.mni_x) >= 10) & ~posterior_fossa
            white = deep & (self.slices[k] >= 0.82)
            self.glioma_sites.append(np.flatnonzero(white if white.sum() > 50 else deep))

            edge = mask & _dilate(outside[k][None], 1)[0]
            sellar = (z < -14) & (np.abs(self.mni_x) < 22) & (self.mni_y > -22) & (self.mni_y < 30)
            self.convexity_sites.append(np.flatnonzero(edge & ~sellar))
            # Along the falx: the midline between the hemispheres, in front of and behind the
            # deep structures, where the interhemispheric fissure is.
            falx = mask & (np.abs(self.mni_x) < 1.0) & ((self.mni_y > 25) | (self.mni_y < -60))
            falx &= self.depth[k] >= 6
            self.falx_sites.append(np.flatnonzero(falx) if z > -10 else np.zeros(0, int))

        # Padded stacks for bilinear sampling: a zero border stands for everything outside.
        pad = ((0, 0), (0, 0), (1, 1), (1, 1))
        self.warped_stack = np.pad(np.stack([self.slices, self.mask.astype(np.float32)]), pad)
        self.fixed_stack = np.pad(
            np.stack([self.dura.astype(np.float32), np.minimum(self.dura_depth, 30.0)]), pad
        ).astype(np.float32)

    def depth_at(self, k: int, point) -> float:
        """Depth in the brain (mm) of slice k at a point in display mm (0 outside)."""
        j, i = ((np.asarray(point) + self.fov / 2) / self.spacing - 0.5).round().astype(int)
        if not (0 <= i < self.size and 0 <= j < self.size):
            return 0.0
        return float(self.depth[k, i, j])

    def slice_index(self, z_mm):
        return (np.asarray(z_mm) - self.z_mm[0]) / (self.z_mm[1] - self.z_mm[0])

    @functools.lru_cache(maxsize=8)
    def stack_for(self, image_size: int) -> np.ndarray:
        """Intensity and mask, low-passed for sampling onto image_size pixels (no aliasing)."""
        ratio = self.size / image_size
        if ratio <= 1.0:
            return self.warped_stack
        out = self.warped_stack.copy()
        out[0] = _blur(out[0], 0.45 * ratio)
        return out


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    path = resources.files("egide.plugins.datasets").joinpath("data", TEMPLATE_FILE)
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return _Template(arrays)


# ---- lesion parameters (drawn once per image, independent of the image size) -------------------
def _draw_lesions(rng: np.random.Generator, labels: np.ndarray, t: _Template) -> dict:
    n = len(labels)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    p = {
        "label": labels,
        # pose and scanner
        "angle": np.deg2rad(u(-10, 10)),
        "scale": ZOOM * u(0.92, 1.08),
        "shift": rng.uniform(-7, 7, (n, 2)),
        "gamma": np.exp(u(np.log(0.9), np.log(1.45))),
        "bias": rng.normal(0.0, 0.08, (n, 5)),
        "noise": u(0.008, 0.025),
        "top": u(0.88, 1.0),
        # lesion (filled per class below)
        "centre": np.zeros((n, 2)),
        "radius": np.ones(n),
        "elong": u(0.8, 1.2),  # axis ratio
        "tilt": u(0, np.pi),
        "harm": np.zeros((n, 3)),  # boundary harmonics k = 2, 3, 4
        "phase": rng.uniform(0, 2 * np.pi, (n, 3)),
        "jitter": np.zeros(n),  # boundary roughness (smooth noise on the boundary)
        "bright": np.zeros(n),  # lesion intensity, in units of white matter
        "core": np.zeros(n),  # necrotic core intensity (glioma)
        "necrosis": np.zeros(n),  # inner fraction of the radius that is necrotic (0: none)
        "edge": np.full(n, 0.05),  # soft width of the boundary, in units of the radius
        "oedema": np.zeros(n),  # oedema extent, in radii (0: none)
        "oedema_depth": np.zeros(n),  # how much oedema darkens white matter
        "push": np.zeros(n),  # mass effect, 0..1
        "cleft": np.zeros(n),  # CSF cleft around an extra-axial mass
        "grain": np.full(n, 0.04),  # texture of the lesion (relative intensity variation)
        "tail": np.zeros(n),  # dural tail length, in radii
        "inward": np.zeros((n, 2)),  # direction from the dura into the brain (meningioma)
        "falx_side": np.zeros(n),  # +1/-1: parafalcine mass on that side of the midline
    }
    z = u(t.z_mm[0], t.z_mm[-1])
    low = rng.uniform(*SELLAR_Z, n)
    z = np.where(labels == PITUITARY, low, z)
    # About a third of the normal slices are redrawn at the sellar levels: a skull-base slice
    # alone does not make an image "pituitary".
    z = np.where((labels == NOTUMOR) & (rng.uniform(size=n) < 0.3), low, z)
    z = np.where(labels == GLIOMA, rng.uniform(*GLIOMA_Z, n), z)
    p["z"] = t.slice_index(z)
    nearest = np.clip(np.round(p["z"]).astype(int), 0, len(t.z_mm) - 1)
    # Keep the whole brain in the frame: |output| = scale * |template - shift| stays inside.
    room = t.fov / 2 - MARGIN_MM
    reach = t.reach[nearest]
    p["scale"] = np.minimum(p["scale"], room / reach)
    longest = np.maximum(room / p["scale"] - reach, 0.0)
    length = np.hypot(*p["shift"].T)
    p["shift"] *= (np.minimum(length, longest) / np.maximum(length, 1e-9))[:, None]

    for i in np.nonzero(labels == GLIOMA)[0]:
        k = nearest[i]
        site = rng.choice(t.glioma_sites[k])
        p["centre"][i] = t.u.flat[site], t.v.flat[site]
        depth = t.depth[k].flat[site]
        high_grade = rng.uniform() < 0.85
        p["radius"][i] = rng.uniform(9.0, min(20.0, max(10.0, depth + 3.0)))
        p["harm"][i] = rng.uniform(0.03, 0.16, 3)
        p["jitter"][i] = rng.uniform(0.05, 0.14)
        p["grain"][i] = rng.uniform(0.05, 0.12)
        if high_grade:
            p["bright"][i] = rng.uniform(0.95, 1.25)
            p["core"][i] = rng.uniform(0.18, 0.42)
            p["necrosis"][i] = rng.uniform(0.3, 0.62)
            p["edge"][i] = rng.uniform(0.05, 0.1)
            p["oedema"][i] = rng.uniform(1.8, 2.8)
            p["oedema_depth"][i] = rng.uniform(0.35, 0.55)
        else:
            p["bright"][i] = rng.uniform(0.28, 0.45)
            p["edge"][i] = rng.uniform(0.08, 0.15)
            p["oedema"][i] = rng.uniform(1.2, 1.6)
            p["oedema_depth"][i] = rng.uniform(0.15, 0.3)
        p["push"][i] = rng.uniform(0.15, 0.45)

    for i in np.nonzero(labels == MENINGIOMA)[0]:
        k = nearest[i]
        radius = rng.uniform(9.0, 21.0)
        p["radius"][i] = radius
        falx = rng.uniform() < 0.2 and len(t.falx_sites[k]) > 0
        if falx:
            site = rng.choice(t.falx_sites[k])
            side = rng.choice([-1.0, 1.0])
            p["falx_side"][i] = side
            p["centre"][i] = t.u.flat[site] + side * radius * rng.uniform(0.45, 0.8), t.v.flat[site]
        else:
            # A point of the brain's outer surface with brain behind it: the mass indents
            # the brain rather than capping a thin gyrus.
            for _ in range(50):
                site = rng.choice(t.convexity_sites[k])
                inward = t.inward[k].reshape(-1, 2)[site]
                base = np.array([t.u.flat[site], t.v.flat[site]])
                if t.depth_at(k, base + inward * 1.6 * radius) >= 0.4 * radius:
                    break
                radius = max(9.0, 0.85 * radius)
            p["radius"][i] = radius
            p["inward"][i] = inward
            p["centre"][i] = base + inward * radius * rng.uniform(0.55, 0.9)
        p["harm"][i] = rng.uniform(0.0, 0.04, 3)
        p["jitter"][i] = rng.uniform(0.0, 0.03)
        p["elong"][i] = rng.uniform(0.85, 1.15)
        p["bright"][i] = rng.uniform(1.0, 1.3)
        p["edge"][i] = rng.uniform(0.03, 0.06)
        p["cleft"][i] = rng.uniform(0.1, 0.35)
        p["grain"][i] = rng.uniform(0.01, 0.03)
        p["tail"][i] = rng.uniform(0.8, 1.8) if rng.uniform() < 0.6 and not falx else 0.0
        has_oedema = rng.uniform() < 0.3
        p["oedema"][i] = rng.uniform(1.2, 1.6) if has_oedema else 0.0
        p["oedema_depth"][i] = rng.uniform(0.1, 0.25) if has_oedema else 0.0
        p["push"][i] = rng.uniform(0.3, 0.6)

    pit = labels == PITUITARY
    m = int(pit.sum())
    p["centre"][pit, 0] = t.centre_x - rng.normal(0.0, 1.0, m)  # u = centre_x - MNI x
    p["centre"][pit, 1] = t.centre_y - (SELLA_Y + rng.normal(0.0, 2.0, m))
    p["radius"][pit] = rng.uniform(5.5, 11.0, m)
    p["elong"][pit] = rng.uniform(0.8, 1.25, m)
    p["tilt"][pit] = rng.normal(np.pi / 2, 0.2, m)  # its axes: front-back and left-right
    p["harm"][pit] = rng.uniform(0.0, 0.05, (m, 3))
    p["jitter"][pit] = rng.uniform(0.0, 0.05, m)
    p["bright"][pit] = rng.uniform(0.85, 1.15, m)
    p["edge"][pit] = rng.uniform(0.05, 0.1, m)
    p["push"][pit] = rng.uniform(0.1, 0.3, m)
    return p


# ---- rendering --------------------------------------------------------------------------------
def _render(rng: np.random.Generator, p: dict, size: int, truth: dict | None = None) -> np.ndarray:
    t = _template()
    n = len(p["label"])
    # float32 throughout: half the memory traffic of float64, and plenty for 8-bit images.
    p = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in p.items()}
    fov = np.float32(t.fov)
    grid = ((np.arange(size, dtype=np.float32) + 0.5) / size * fov - fov / 2).astype(np.float32)
    q, pp = np.meshgrid(grid, grid, indexing="ij")  # display mm of the output: rows, cols

    # Pose: output pixel -> template display mm.
    c, s = np.cos(p["angle"])[:, None, None], np.sin(p["angle"])[:, None, None]
    k = 1.0 / p["scale"][:, None, None]
    u = k * (c * pp - s * q) + p["shift"][:, 0, None, None]
    v = k * (s * pp + c * q) + p["shift"][:, 1, None, None]

    # Lesion geometry, in the template frame.
    du = u - p["centre"][:, 0, None, None]
    dv = v - p["centre"][:, 1, None, None]
    tilt_c, tilt_s = np.cos(p["tilt"])[:, None, None], np.sin(p["tilt"])[:, None, None]
    a = tilt_c * du + tilt_s * dv
    b = (-tilt_s * du + tilt_c * dv) * p["elong"][:, None, None]
    r = np.hypot(a, b)
    theta = np.arctan2(b, a)
    shape = np.ones_like(r)
    for h in range(3):
        shape += p["harm"][:, h, None, None] * np.cos((h + 2) * theta + p["phase"][:, h, None, None])
    radius = p["radius"][:, None, None]
    px_mm = fov / size
    sick = p["label"] != NOTUMOR  # only images with a lesion need its random fields
    rough, spread_noise = _smooth_noise(rng, sick, size, 4.0 / px_mm)
    texture, _ = _smooth_noise(rng, sick, size, 1.5 / px_mm)
    rt = r / (radius * shape) + p["jitter"][:, None, None] * rough  # < 1 inside the lesion

    # Mass effect: sample the template closer to the lesion centre, so tissue moves outwards.
    push = p["push"][:, None, None]
    squeeze = 1.0 - push * radius**2 / (du**2 + dv**2 + radius**2)
    wu = p["centre"][:, 0, None, None] + du * squeeze
    wv = p["centre"][:, 1, None, None] + dv * squeeze

    base, brain = _sample(t.stack_for(size), t, p["z"], wu, wv)
    # The skull's inner table, which does not move: only extra-axial masses need it.
    dura = np.zeros_like(base)
    dura_depth = np.zeros_like(base)
    extra = np.flatnonzero(p["label"] == MENINGIOMA)
    if len(extra):
        dura[extra], dura_depth[extra] = _sample(t.fixed_stack, t, p["z"][extra], u[extra], v[extra])

    label = p["label"][:, None, None]
    edge = np.maximum(p["edge"][:, None, None], 0.6 * px_mm / radius)
    inside = _sigmoid((1.0 - rt) / edge)

    # Oedema: darkens white matter most (vasogenic oedema spreads along it).
    oedema_extent = p["oedema"][:, None, None]
    spread = r / (radius * shape * np.maximum(oedema_extent, 1e-3)) + 0.25 * spread_noise
    oedema = _sigmoid((1.0 - spread) / 0.12) * (oedema_extent > 0)
    white = np.clip((base - 0.55) / 0.35, 0.0, 1.0)
    base = base * (1.0 - p["oedema_depth"][:, None, None] * oedema * (0.35 + 0.65 * white) * brain)

    # Lesion intensity: enhancing rim around a necrotic core (if any), with a little texture.
    necrosis = p["necrosis"][:, None, None]
    rim = _sigmoid((rt - necrosis) / 0.08)
    level = np.where(necrosis > 0, p["core"][:, None, None] + (p["bright"][:, None, None] - p["core"][:, None, None]) * rim,
                     p["bright"][:, None, None])
    level = WM * level * (1.0 + p["grain"][:, None, None] * texture)

    # Where each kind may be: intra-axial in the brain, extra-axial inside the dura.
    alpha = inside
    alpha = np.where(label == GLIOMA, alpha * np.clip(brain * 1.2, 0, 1), alpha)
    meningioma = label == MENINGIOMA
    # A parafalcine mass stays on its own side of the falx (the midline, u = centre_x).
    side = p["falx_side"][:, None, None]
    falx_clip = np.where(side != 0, _sigmoid((side * (u - t.centre_x) - 0.5) / 0.5), 1.0)
    alpha = np.where(meningioma, alpha * dura * falx_clip, alpha)
    alpha = np.where(label == NOTUMOR, 0.0, alpha)

    # CSF cleft: a thin dark ring where the brain meets an extra-axial mass.
    cleft = p["cleft"][:, None, None] * np.exp(-(((rt - 1.06) / 0.05) ** 2)) * meningioma
    base = base * (1.0 - cleft * brain)
    # The brain it indents is pushed inwards, never out through the skull.
    base = np.where(meningioma, base * dura, base)
    # Dural tail: thickened enhancing dura tapering away from the base, along the surface.
    tail = p["tail"][:, None, None]
    if np.any(tail > 0):
        inward = p["inward"]
        along = -inward[:, 1, None, None] * du + inward[:, 0, None, None] * dv
        across = inward[:, 0, None, None] * du + inward[:, 1, None, None] * dv
        reach = np.clip(1.0 - np.abs(along) / (radius * (1.0 + np.maximum(tail, 1e-3))), 0.0, 1.0)
        reach *= np.abs(across) < 1.5 * radius  # this side of the brain only
        band = np.exp(-((dura_depth - 1.2) / 1.2) ** 2) * dura
        tail_alpha = 0.7 * reach * band * (tail > 0) * (1.0 - alpha)
        base = base * (1.0 - tail_alpha) + WM * p["bright"][:, None, None] * 0.85 * tail_alpha

    image = base * (1.0 - alpha) + level * alpha
    if truth is not None:
        truth["lesion"][...] = alpha
        truth["brain"][...] = brain
        truth["mni_x"][...] = t.centre_x - u
        truth["mni_y"][...] = t.centre_y - v
        truth["mni_z"][...] = (t.z_mm[0] + p["z"] * (t.z_mm[1] - t.z_mm[0]))[:, None, None]

    # Scanner: smooth multiplicative bias field, per-image windowing, gamma, Rician noise.
    xn, yn = pp / (fov / 2), q / (fov / 2)
    basis = np.stack([xn, yn, xn * yn, xn**2 - 0.33, yn**2 - 0.33])
    image *= np.exp(np.einsum("nk,khw->nhw", p["bias"], basis))
    top = np.quantile(image.reshape(n, -1), 0.99, axis=1)[:, None, None]
    image = np.clip(image / np.maximum(top, 1e-3), 0.0, None) ** p["gamma"][:, None, None]
    image *= p["top"][:, None, None]
    sigma = p["noise"][:, None, None]
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.hypot(real, imag), 0.0, 1.0).astype(np.float32)


def _sample(stack: np.ndarray, t: _Template, z, u, v) -> list[np.ndarray]:
    """Trilinear samples, one (n, H, W) array per channel of a padded (C, Z, size+2, size+2)
    float32 stack; z is a slice index per image, (u, v) display mm per pixel."""
    ch, nz, h, w = stack.shape
    z = np.clip(np.asarray(z, np.float32), 0, nz - 1)[:, None, None]
    j = np.clip((u + t.fov / 2) / t.spacing + 0.5, 0.0, w - 1.001)  # +1 - 0.5: the zero border
    i = np.clip((v + t.fov / 2) / t.spacing + 0.5, 0.0, h - 1.001)
    k0 = np.minimum(z.astype(np.intp), nz - 2)
    i0 = i.astype(np.intp)
    j0 = j.astype(np.intp)
    fz = (z - k0).astype(np.float32)
    fi = (i - i0).astype(np.float32)
    fj = (j - j0).astype(np.float32)
    corners = {}
    base = (k0 * h + i0) * w + j0
    for dz in (0, h * w):
        for di in (0, w):
            for dj in (0, 1):
                corners[dz, di, dj] = base + (dz + di + dj)
    out = []
    for channel in stack.reshape(ch, -1):  # 1-D gathers: far faster than gathering rows

        def bilinear(dz):
            top = np.take(channel, corners[dz, 0, 0]) * (1 - fj) + np.take(channel, corners[dz, 0, 1]) * fj
            bottom = np.take(channel, corners[dz, w, 0]) * (1 - fj) + np.take(channel, corners[dz, w, 1]) * fj
            return top * (1 - fi) + bottom * fi

        out.append(bilinear(0) * (1 - fz) + bilinear(h * w) * fz)
    return out


# ---- small numpy helpers (no scipy) --------------------------------------------------------------
def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _smooth_noise(rng: np.random.Generator, rows: np.ndarray, size: int, sigma_px: float):
    """Two independent Gaussian-smoothed noise fields with unit standard deviation, each
    (len(rows), size, size), zero where `rows` is False: the real and imaginary parts of
    smoothed complex white noise (one FFT for two fields)."""
    shape = (int(rows.sum()), size, size)
    white = rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)
    f = np.fft.fftfreq(size)
    gain = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(white) * gain)
    out = []
    for part in (field.real, field.imag):
        full = np.zeros((len(rows), size, size), np.float32)
        full[rows] = part / (part.std(axis=(1, 2), keepdims=True) + 1e-6)
        out.append(full)
    return out


def _blur(images: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur of the last two axes (periodic, through the FFT)."""
    h, w = images.shape[-2:]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    gain = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(images) * gain, s=(h, w)).astype(np.float32)


def _shifted(mask: np.ndarray, di: int, dj: int, fill: bool) -> np.ndarray:
    out = np.full_like(mask, fill)
    h, w = mask.shape[-2:]
    out[..., max(di, 0) : h + min(di, 0), max(dj, 0) : w + min(dj, 0)] = mask[
        ..., max(-di, 0) : h + min(-di, 0), max(-dj, 0) : w + min(-dj, 0)
    ]
    return out


_CROSS = ((1, 0), (-1, 0), (0, 1), (0, -1))
_SQUARE = _CROSS + ((1, 1), (1, -1), (-1, 1), (-1, -1))


def _erode(mask: np.ndarray, step: int) -> np.ndarray:
    out = mask.copy()
    for di, dj in _CROSS if step % 2 else _SQUARE:  # alternating: an octagonal distance
        out &= _shifted(mask, di, dj, False)
    return out


def _dilate(mask: np.ndarray, times: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(times):
        grown = out.copy()
        for di, dj in _CROSS:
            grown |= _shifted(out, di, dj, False)
        out = grown
    return out


def _depth(mask: np.ndarray) -> np.ndarray:
    """Approximate distance (pixels) from each pixel inside `mask` to its edge."""
    depth = np.zeros(mask.shape, np.float32)
    current = mask.copy()
    step = 0
    while current.any():
        depth += current
        step += 1
        current = _erode(current, step)
    return depth


def _flood_from_border(free: np.ndarray) -> np.ndarray:
    """The part of `free` (per slice) connected to the image border."""
    reached = np.zeros_like(free)
    reached[..., 0, :] = free[..., 0, :]
    reached[..., -1, :] = free[..., -1, :]
    reached[..., :, 0] = free[..., :, 0]
    reached[..., :, -1] = free[..., :, -1]
    while True:
        grown = _dilate(reached, 1) & free
        if (grown == reached).all():
            return reached
        reached = grown
