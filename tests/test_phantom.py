"""The built-in `brain-tumor-phantom` data set: shape, determinism, splits, and where lesions go."""

import numpy as np
import pytest

import egide
from egide.core import DataError, ParameterError
from egide.plugins.datasets import brain_tumor_phantom as phantom

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
GLIOMA, MENINGIOMA, NOTUMOR, PITUITARY = range(4)


@pytest.fixture(scope="module")
def test_split():
    return egide.datasets.load("brain-tumor-phantom", split="test")


@pytest.fixture(scope="module")
def truth():
    """A small set rendered with where each lesion was drawn (same images as the data set)."""
    x, y, _, found = phantom.render_all(64, 60, 3, truth=True)
    return x[..., 0], y, found


def _hashes(ds):
    return {image.tobytes() for image in ds.x}


def test_loads_by_name_with_four_balanced_classes(test_split):
    ds = test_split
    assert ds.class_names == CLASSES
    assert ds.image_shape == (64, 64, 1)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    counts = np.bincount(ds.y, minlength=4)
    assert counts.min() >= 0.8 * counts.max() and counts.min() > 0
    # Real images, not blank ones: a dark background around a brighter brain.
    assert ds.x.std() > 0.1 and np.median(ds.x[:, :4, :4]) < 0.15


def test_splits_are_70_15_15_and_disjoint():
    source = egide.registry().create("dataset", "brain-tumor-phantom")
    splits = {name: source.load(name) for name in ("train", "val", "test")}
    sizes = {name: len(ds) for name, ds in splits.items()}
    assert sizes == {"train": 1680, "val": 360, "test": 360}
    assert len(source.load()) == sum(sizes.values())
    seen = [_hashes(ds) for ds in splits.values()]
    assert sum(map(len, seen)) == sum(sizes.values())  # no image twice, within or across splits
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])


def test_deterministic_under_a_seed_and_different_under_another():
    first = phantom.render_all(32, 20, 7)[0]
    again = phantom.render_all(32, 20, 7)[0]
    other = phantom.render_all(32, 20, 8)[0]
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.02


def test_loads_are_cached_and_cannot_be_corrupted():
    a = egide.datasets.load("brain-tumor-phantom", split="val")
    b = egide.datasets.load("brain-tumor-phantom", split="val")
    assert np.shares_memory(a.x, b.x)
    with pytest.raises(ValueError):
        a.x[0, 0, 0, 0] = 1.0


def test_image_size_parameter_through_the_registry():
    ds = egide.registry().create("dataset", "brain-tumor-phantom", image_size=32, per_class=40).load("test")
    assert ds.image_shape == (32, 32, 1)
    assert len(ds) == 4 * 6 and set(ds.y.tolist()) == {0, 1, 2, 3}
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0


@pytest.mark.parametrize(
    "params",
    [{"image_size": 8}, {"image_size": 512}, {"per_class": 0}, {"seed": -1}, {"size": 64},
     {"image_size": "big"}],
)
def test_bad_parameters_are_parameter_errors(params):
    with pytest.raises(ParameterError):
        egide.registry().create("dataset", "brain-tumor-phantom", **params)


def test_unknown_split_is_a_data_error():
    with pytest.raises(DataError, match="train, val, test"):
        egide.registry().create("dataset", "brain-tumor-phantom", per_class=20).load("validation")


def test_truth_renders_the_same_images(truth):
    x, y, _ = truth
    ds = egide.registry().create("dataset", "brain-tumor-phantom", per_class=60, seed=3).load()
    np.testing.assert_array_equal(ds.x[..., 0], x)
    np.testing.assert_array_equal(ds.y, y)


# ---- where the lesions are ------------------------------------------------------------------------
def _outside_nearby(brain, pixels=2):
    """Per image: pixels within `pixels` of the outside of the brain (background)."""
    out = brain < 0.5
    near = out.copy()
    for _ in range(pixels):
        grown = near.copy()
        grown[:, 1:] |= near[:, :-1]
        grown[:, :-1] |= near[:, 1:]
        grown[:, :, 1:] |= near[:, :, :-1]
        grown[:, :, :-1] |= near[:, :, 1:]
        near = grown
    return near


def test_every_tumour_is_drawn_and_notumor_has_none(truth):
    _, y, found = truth
    area = (found["lesion"] > 0.5).sum(axis=(1, 2))
    assert (area[y == NOTUMOR] == 0).all()
    for label in (GLIOMA, MENINGIOMA, PITUITARY):
        assert (area[y == label] >= 4).all(), CLASSES[label]  # visible at 64 px: >= 4 pixels


def test_gliomas_are_intra_axial_in_a_hemisphere(truth):
    _, y, found = truth
    lesion, brain = found["lesion"][y == GLIOMA], found["brain"][y == GLIOMA]
    inside = (lesion * (brain > 0.5)).sum(axis=(1, 2)) / lesion.sum(axis=(1, 2))
    assert inside.min() > 0.97  # within the brain parenchyma, never outside it
    x_mm = (lesion * np.abs(found["mni_x"][y == GLIOMA])).sum(axis=(1, 2)) / lesion.sum(axis=(1, 2))
    assert np.mean(x_mm > 8) > 0.9  # off the midline: in one hemisphere


def test_meningiomas_sit_at_the_brain_edge_and_gliomas_deeper(truth):
    _, y, found = truth
    core = found["lesion"] > 0.5
    near_outside = _outside_nearby(found["brain"]) | (np.abs(found["mni_x"]) < 4.0)  # or the falx
    touches = (core & near_outside).any(axis=(1, 2))
    assert touches[y == MENINGIOMA].all()
    share = (core & near_outside).sum(axis=(1, 2)) / np.maximum(core.sum(axis=(1, 2)), 1)
    assert np.median(share[y == MENINGIOMA]) > 2 * np.median(share[y == GLIOMA]) + 0.05


def test_pituitary_masses_are_midline_at_the_skull_base(truth):
    _, y, found = truth
    lesion = found["lesion"][y == PITUITARY]
    weight = lesion.sum(axis=(1, 2))
    x_mm = (lesion * found["mni_x"][y == PITUITARY]).sum(axis=(1, 2)) / weight
    y_mm = (lesion * found["mni_y"][y == PITUITARY]).sum(axis=(1, 2)) / weight
    z_mm = found["mni_z"][y == PITUITARY][:, 0, 0]
    assert np.abs(x_mm).max() < 4.0
    assert (-12.0 < y_mm).all() and (y_mm < 6.0).all()
    assert z_mm.max() <= -18.0
    # The other classes are not all on those slices (the level alone does not give the class).
    others = found["mni_z"][y != PITUITARY][:, 0, 0]
    assert np.mean(others > -18.0) > 0.5


def test_enhancing_masses_are_brighter_than_the_brain_around_them(truth):
    x, y, found = truth
    for label in (MENINGIOMA, PITUITARY):
        brighter = []
        for i in np.nonzero(y == label)[0]:
            lesion = np.sort(x[i][found["lesion"][i] > 0.5])
            brain = x[i][(found["brain"][i] > 0.5) & (found["lesion"][i] < 0.01)]
            top = lesion[-max(3, len(lesion) // 4) :]  # its brightest quarter (at least 3 pixels)
            brighter.append(top.mean() > np.median(brain))
        assert np.mean(brighter) > 0.9, CLASSES[label]
