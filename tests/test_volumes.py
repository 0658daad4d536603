"""Volumes (N, D, H, W, C): a Conv3D classifier attacked, defended and guarded as volumes."""

from __future__ import annotations

import numpy as np
import pytest

import egide
from egide.core.errors import DataError, InputError
from examples.rods import SHAPE, make_rods

ATTACKS = [("fgsm", "inf"), ("pgd", "inf"), ("pgd", "2"), ("bim", "inf"), ("mim", "2"), ("apgd", "inf"),
           ("apgd", "2"), ("apgd", "1"), ("square", "inf"), ("square", "2"), ("square", "1"), ("fab", "inf"),
           ("fab", "2")]
EPS = {"inf": 0.1, "2": 0.8, "1": 6.0}
REPLAYED = {("pgd", "inf"), ("apgd", "2"), ("square", "inf"), ("fab", "2")}  # also run in batches of 5


@pytest.fixture(scope="session")
def rods():
    x_train, y_train = make_rods(600, seed=1)  # what conftest's rods_model was trained on
    x_test, y_test = make_rods(60, seed=2)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def volume_clf(rods_model):
    return egide.Classifier.from_keras(rods_model, clip=(0.0, 1.0))


@pytest.fixture(scope="session")
def volume_batch(rods, volume_clf):
    _, _, x, y = rods
    keep = volume_clf.predict(x) == y
    assert keep.mean() > 0.9, "the rods network did not learn its task"
    return x[keep][:12], y[keep][:12]


def sizes(delta):
    flat = delta.reshape(len(delta), -1)
    return {"inf": np.abs(flat).max(1), "2": np.sqrt((flat**2).sum(1)), "1": np.abs(flat).sum(1)}


def test_a_conv3d_model_takes_volumes_and_says_what_shape_it_wants(volume_clf, volume_batch):
    x, _ = volume_batch
    assert volume_clf.input_shape == SHAPE
    assert volume_clf.check_inputs(x[..., 0]).shape == x.shape  # the channel axis may be left out
    with pytest.raises(InputError, match=r"\(N, 10, 10, 10, 1\)"):
        volume_clf.check_inputs(x[:, :8])
    with pytest.raises(InputError, match=r"\(N, 10, 10, 10, 1\)"):
        volume_clf.check_inputs(np.zeros((2, 10, 10, 1), np.float32))


def test_a_dataset_holds_volumes():
    x, y = make_rods(6, seed=3)
    data = egide.Dataset(x, y, ("a", "b", "c"))
    assert data.image_shape == SHAPE
    with pytest.raises(DataError, match=r"\(N, D, H, W, C\)"):
        egide.Dataset(x[..., 0, 0], y, ("a", "b", "c"))


@pytest.mark.parametrize("name,norm", ATTACKS)
def test_every_attack_holds_its_budget_on_volumes_and_breaks_some(registry, volume_clf, volume_batch, name, norm):
    x, y = volume_batch
    params = {"eps": EPS[norm], "norm": norm} if name not in ("fgsm", "bim") else {"eps": EPS[norm]}
    if name == "square":
        params["queries"] = 300
    attack = registry.create("attack", name, **params)
    result = attack.run(volume_clf, x, y, seed=0)
    assert result.x_adv.shape == x.shape
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert sizes(result.x_adv - x)[norm].max() <= EPS[norm] * (1 + 1e-4) + 1e-6
    assert result.robust_accuracy < 1.0, f"{name} ({norm}) broke no volume at all"
    if (name, norm) not in REPLAYED:
        return
    again = attack.run(volume_clf, x, y, seed=0, batch_size=5)  # another batching, the same result
    # TensorFlow's CPU Conv3D sums in an order that depends on the batch (logits ~2e-6 apart);
    # FAB's bisections follow those differences further (docs/decisions.md, "Volumes").
    np.testing.assert_allclose(again.x_adv, result.x_adv, atol=2e-3 if name == "fab" else 1e-4)
    assert np.array_equal(again.y_pred_adv, result.y_pred_adv)


@pytest.mark.parametrize("name", ["cw", "deepfool"])
def test_minimal_attacks_find_small_perturbations_of_volumes(registry, volume_clf, volume_batch, name):
    x, y = volume_batch
    params = {"steps": 30, "binary_search_steps": 3} if name == "cw" else {}
    result = registry.create("attack", name, **params).run(volume_clf, x[:8], y[:8], seed=0)
    assert result.x_adv.shape == x[:8].shape
    assert result.robust_accuracy < 0.5


def test_square_uses_cubes_on_volumes(registry):
    square = registry.create("attack", "square", eps=0.1, queries=1000)
    assert square.side(0, 10, 10, 10) == round((0.8 * 1000) ** (1 / 3))
    assert square.side(0, 64, 64) == round((0.8 * 64 * 64) ** 0.5)  # images keep their squares
    from egide.plugins.attacks.square import _eta

    patterns = _eta(5, "2", 3)
    assert patterns.shape == (3, 5, 5, 5)
    for axis, pattern in enumerate(patterns):  # unit L2 mass, split in opposite halves across `axis`
        assert np.isclose(np.sqrt((pattern**2).sum()), 1.0)
        halves = np.split(pattern, [2], axis=axis)
        assert (halves[0] >= 0).all() and (halves[1] <= 0).all()


def test_the_median_filter_is_scipys_on_volumes(registry, volume_clf, volume_batch):
    from scipy import ndimage

    x, _ = volume_batch
    for size in (2, 3):
        defense = registry.create("defense", "median-filter", size=size)
        filtered = defense.transform(x[:3], None, (0.0, 1.0)).numpy()
        expected = np.stack([ndimage.median_filter(v[..., 0], size=size, mode="reflect") for v in x[:3]])[..., None]
        np.testing.assert_allclose(filtered, expected, atol=1e-7)
    defended = registry.create("defense", "median-filter", size=3).apply(volume_clf)
    assert defended.predict(x).shape == (len(x),)


def test_a_plugin_that_cannot_take_volumes_is_refused_by_name(registry, volume_clf):
    with pytest.raises(InputError, match="defense 'jpeg' cannot run on volumes.*JPEG codes 2-D"):
        registry.create("defense", "jpeg").apply(volume_clf)


@pytest.mark.parametrize("name", ["bit-depth", "gaussian-noise"])
def test_elementwise_defenses_work_on_volumes(registry, volume_clf, volume_batch, name):
    x, y = volume_batch
    defended = registry.create("defense", name).apply(volume_clf)
    assert (defended.predict(x) == y).mean() > 0.8
    result = registry.create("attack", "pgd", eps=0.1, steps=5).run(defended.adaptive(), x[:6], y[:6], seed=0)
    assert np.abs(result.x_adv - x[:6]).max() <= 0.1 + 1e-6


@pytest.mark.parametrize("name", ["magnet", "kernel-density", "feature-squeezing", "learned"])
def test_detectors_fit_and_score_volumes(registry, volume_clf, volume_batch, rods, name):
    _, _, x_all, y_all = rods
    x, y = volume_batch
    adv = registry.create("attack", "pgd", eps=0.15, steps=10).run(volume_clf, x, y, seed=0).x_adv
    params = {"steps": 100} if name == "magnet" else {"epochs": 3} if name == "learned" else {}
    detector = registry.create("detector", name, **params)
    detector.fit(volume_clf, x_all, adv if name == "learned" else None)
    scores = detector.score(volume_clf, np.concatenate([x, adv]))
    assert scores.shape == (2 * len(x),) and np.isfinite(scores).all()


def test_volumes_are_shown_as_three_mid_slices():
    from egide.lab.report.volume_views import GAP, as_picture

    volume = np.zeros((6, 8, 10, 1), np.float32)
    volume[3, 4, 5] = 1.0  # the centre voxel lies on all three mid-slices
    picture = as_picture(volume)
    assert picture.shape == (8, 10 + 10 + 8 + 2 * GAP, 1)  # axial (8x10), coronal (6x10), sagittal (6x8)
    assert picture.sum() == 3.0
    image = np.zeros((8, 8, 1))
    assert as_picture(image) is image


def test_the_most_perturbed_slice_is_where_the_change_is_largest():
    from egide.lab.report.volume_views import most_perturbed_slice

    delta = np.full((6, 8, 8, 1), 0.01, np.float32)
    delta[1, 2, 2] = -0.5  # one large change outweighs a slice of small ones
    assert most_perturbed_slice(delta) == 1
    delta[4] = 0.2
    assert most_perturbed_slice(delta) == 4


def test_volumes_from_files_are_resampled_to_the_model(volume_clf):
    from dataclasses import replace

    from egide.lab.data.fitting import for_classifier

    x, y = make_rods(4, seed=5)
    big = np.repeat(np.repeat(np.repeat(x, 2, axis=1), 2, axis=2), 2, axis=3)  # 20^3
    data = replace(egide.Dataset(big, y, ("a", "b", "c")), from_images=True)
    fitted = for_classifier(data, volume_clf)
    assert fitted.x.shape == (4, *SHAPE)
    assert np.abs(fitted.x - x).mean() < 0.05
    with pytest.raises(DataError, match="resampled|image_size"):
        for_classifier(egide.Dataset(big, y, ("a", "b", "c")), volume_clf)  # arrays: never silently
    flat = egide.Dataset(np.zeros((4, 10, 10, 1), np.float32), y, ("a", "b", "c"))
    with pytest.raises(DataError, match=r"takes volumes \(D, H, W, C\)"):
        for_classifier(flat, volume_clf)


def _nifti(path, data, affine):
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return path


def test_a_nifti_volume_is_read_whole_in_display_order_whatever_its_stored_orientation(tmp_path):
    """A marker at the patient's anterior-superior-right lands first row, first column, last slice,
    from a file stored RAS and from one stored LPS (as DICOM converters often write)."""
    from egide.lab.data.nifti import read_volume

    ras = np.zeros((6, 8, 10), np.float32)  # (x: left -> right, y: posterior -> anterior, z: up)
    ras[...] = 10.0
    ras[5, 7, 9] = 100.0  # right, anterior, superior corner
    lps = ras[::-1, ::-1, :]  # the same voxels stored with x and y the other way
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:3, 3] = [5.0, 7.0, 0.0]
    for name, data, affine in (("ras", ras, np.diag([2.0, 1.5, 3.0, 1.0])), ("lps", lps, flip @ np.diag([2.0, 1.5, 3.0, 1.0]))):
        volume, spacing = read_volume(_nifti(tmp_path / f"{name}.nii.gz", data, affine))
        assert volume.shape == (10, 8, 6, 1), name  # (D: z, H: y, W: x)
        assert spacing == (3.0, 1.5, 2.0), name
        assert np.unravel_index(volume[..., 0].argmax(), volume.shape[:3]) == (9, 0, 0), name


def test_a_volume_model_reads_a_nifti_tree_whole_resampled_to_its_grid(tmp_path, volume_clf):
    """Volumes of several shapes and voxel sizes come out on the model's 10^3 grid, proportions kept."""
    from egide.lab.data import load, load_for_model

    rng = np.random.default_rng(0)
    shapes = {"along-depth": [(20, 20, 20), (10, 10, 10)], "along-height": [(30, 20, 10)],
              "along-width": [(16, 16, 16)]}
    for label, items in shapes.items():
        for i, shape in enumerate(items):
            _nifti(tmp_path / label / f"{i}.nii.gz", rng.uniform(0, 100, shape), np.diag([1.0, 1.0, 2.0, 1.0]))
    data, _ = load_for_model(tmp_path, volume_clf)
    assert data.x.shape == (4, 10, 10, 10, 1) and data.class_names == ("along-depth", "along-height", "along-width")
    assert volume_clf.predict(data.x).shape == (4,)
    with pytest.raises(DataError, match=r"the volumes differ in size .*image_size=\(depth, height, width\)"):
        load(tmp_path, slice_axis="volume")
    assert load(tmp_path, image_size=(12, 12)).x.shape[1:] == (12, 12, 1)  # without a volume model: slices


def test_fitting_a_volume_keeps_its_proportions():
    from egide.lab.data.nifti import fit_volume

    volume = np.ones((10, 40, 20, 1), np.float32)  # 10 slices of 4 mm, 40x20 voxels of 1 mm: 40x40x20 mm
    fitted = fit_volume(volume, (4.0, 1.0, 1.0), (8, 8, 8))  # 5 mm voxels: 8 x 8 x 4 of tissue
    assert fitted.shape == (8, 8, 8, 1)
    filled = fitted[..., 0] > 0.5
    assert filled[:, :, 2:6].all() and not filled[:, :, :1].any() and not filled[:, :, 7:].any()


@pytest.mark.slow
def test_the_standard_suite_runs_every_member_on_volumes(volume_clf, rods):
    """AutoAttack's standard protocol on a Conv3D model, every member run (with 3 classes, the
    variants that apply: APGD-DLR for APGD-T), Square with cubes last."""
    from egide.lab.evaluation.pipeline import evaluate
    from examples.rods import CLASSES

    _, _, x, y = rods
    report = evaluate({"model": "rods", "data": "rods", "attacks": [{"plugin": "fgsm"}], "eps": [0.04],
                       "suite": "standard", "gallery": 0, "sanity_checks": False},
                      classifier=volume_clf, dataset=egide.Dataset(x[:8], y[:8], CLASSES))
    ran = [m.ran for m in report.suite.members]
    assert len(ran) == 4 and None not in ran and ran[0] == "apgd-ce" and ran[-1] == "square", ran
    (run,) = report.suite.runs
    assert run.after[-1] <= run.after[0] <= report.clean_accuracy
