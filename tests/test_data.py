"""Data sets: loaders for .npz files and image folders, Dataset checks, and fitting a classifier.

Every test writes real files in tmp_path and reads them through the public API.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import egide
from egide.core.errors import DataError
from egide.datasets import for_classifier

load = egide.datasets.load


def save_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def gray(value: int, size=(6, 5)) -> np.ndarray:
    return np.full(size, value, np.uint8)


def make_folder(root: Path, classes: dict[str, list[np.ndarray]]) -> Path:
    for name, images in classes.items():
        for i, pixels in enumerate(images):
            save_png(root / name / f"{i:03d}.png", pixels)
    return root


# ---- .npz ----------------------------------------------------------------------------------
def test_npz_round_trip_keeps_values_labels_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (7, 4, 5, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0, 2, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["glioma", "meningioma", "none"]))

    ds = load(tmp_path / "d.npz")

    assert isinstance(ds, egide.Dataset)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.class_names == ("glioma", "meningioma", "none")
    assert len(ds) == 7 and ds.num_classes == 3 and ds.image_shape == (4, 5, 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_npz_integer_pixels_are_scaled_to_unit_range(tmp_path, dtype):
    top = np.iinfo(dtype).max
    x = np.array([[[0, top], [top // 2, 1]]] * 3, dtype)  # (3, 2, 2): no channel axis
    np.savez(tmp_path / "d.npz", x=x, y=[0, 1, 1])

    ds = load(str(tmp_path / "d.npz"))

    assert ds.x.shape == (3, 2, 2, 1)
    np.testing.assert_allclose(ds.x[..., 0], x / top, rtol=1e-6)
    assert ds.x.max() == 1.0
    assert ds.class_names == ("0", "1")  # no class_names stored: indices as names


def test_npz_one_hot_labels_become_indices_and_keep_the_class_count(tmp_path):
    y = np.eye(4)[[2, 0, 1]]  # class 3 never occurs
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2, 2, 1), np.float32), y=y)

    ds = load(tmp_path / "d.npz")

    np.testing.assert_array_equal(ds.y, [2, 0, 1])
    assert ds.class_names == ("0", "1", "2", "3")


def test_npz_splits_are_chosen_by_name_and_listed_when_missing(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=np.zeros((4, 2, 2), np.uint8), y_train=[0, 1, 0, 1],
        x_test=np.full((2, 2, 2), 255, np.uint8), y_test=[1, 0],
        class_names=["a", "b"],
    )

    test = load(path, split="test")
    assert len(test) == 2 and test.x.min() == 1.0
    np.testing.assert_array_equal(test.y, [1, 0])
    assert len(load(path, split="train")) == 4

    with pytest.raises(DataError, match=r"splits test, train: pass split="):
        load(path)
    with pytest.raises(DataError, match=r"no split 'val': the splits are test, train"):
        load(path, split="val")


def test_npz_without_splits_says_to_omit_split(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 2), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match=r"x_test.*omit split="):
        load(tmp_path / "d.npz", split="test")


def test_npz_floats_outside_unit_range_are_refused_with_a_fix(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((2, 2, 2), 200.0, np.float32), y=[0, 1])
    with pytest.raises(DataError, match=r"\[200, 200\].*rescale"):
        load(tmp_path / "d.npz")


def test_npz_nan_pixels_are_refused(tmp_path):
    x = np.zeros((2, 2, 2), np.float32)
    x[1, 0, 0] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=[0, 1])
    with pytest.raises(DataError, match="NaN"):
        load(tmp_path / "d.npz")


def test_empty_npz_archive_names_the_expected_keys(tmp_path):
    np.savez(tmp_path / "d.npz")
    with pytest.raises(DataError, match=r"d\.npz: expected arrays 'x' .* and 'y' .*, found no arrays"):
        load(tmp_path / "d.npz")


def test_npz_with_zero_images_is_an_empty_data_set(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((0, 4, 4), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="the data set is empty"):
        load(tmp_path / "d.npz")


def test_npz_wrong_keys_are_listed(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 2, 2)), labels=[0, 1])
    with pytest.raises(DataError, match=r"found images, labels"):
        load(tmp_path / "d.npz")


def test_npz_label_count_must_match_image_count(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2, 2), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load(tmp_path / "d.npz")


def test_npz_channels_first_images_get_a_transpose_hint(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 1, 28, 28), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match=r"channels-first.*transpose\(0, 2, 3, 1\)"):
        load(tmp_path / "d.npz")


class _WritesAFile:
    """Unpickling this object creates `path`: proof that a pickle ran code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pickle-ran"
    names = np.empty(2, dtype=object)
    names[:] = [_WritesAFile(marker), "b"]
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 2), np.uint8), y=[0, 1], class_names=names)

    with pytest.raises(DataError, match=r"'class_names' holds Python objects.*never"):
        load(tmp_path / "d.npz")
    assert not marker.exists()

    # The file really carries a live pickle: opening it unsafely would have run it.
    np.load(tmp_path / "d.npz", allow_pickle=True)["class_names"]
    assert marker.exists()


def test_npz_limit_first_keeps_the_first_images_and_all_classes(tmp_path):
    x = np.arange(5, dtype=np.uint8).reshape(5, 1, 1) * 50
    np.savez(tmp_path / "d.npz", x=x, y=[0, 0, 1, 2, 2])

    ds = load(tmp_path / "d.npz", limit=2, sampling="first")

    np.testing.assert_allclose(ds.x[:, 0, 0, 0], [0, 50 / 255])
    assert ds.class_names == ("0", "1", "2")


def test_npz_limit_draws_every_class_by_default(tmp_path):
    x = np.arange(6, dtype=np.uint8).reshape(6, 1, 1) * 40
    np.savez(tmp_path / "d.npz", x=x, y=[0, 0, 1, 1, 2, 2])

    ds = load(tmp_path / "d.npz", limit=3)

    assert sorted(ds.y.tolist()) == [0, 1, 2]


def test_npz_image_size_and_channels_are_applied(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((2, 4, 4), 128, np.uint8), y=[0, 1])

    ds = load(tmp_path / "d.npz", image_size=(2, 3), channels=3)

    assert ds.x.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(ds.x, 128 / 255, rtol=1e-5)


def test_a_broken_npz_file_is_a_data_error(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match=r"d\.npz"):
        load(tmp_path / "d.npz")


# ---- image folders -------------------------------------------------------------------------
def test_folder_classes_labels_and_pixels_round_trip(tmp_path):
    root = make_folder(
        tmp_path, {"meningioma": [gray(30), gray(40)], "glioma": [gray(10)], "pituitary": [gray(250)]}
    )
    save_png(root / "glioma" / "000_b.png", gray(20))  # sorts after 000.png

    ds = load(root)

    assert ds.class_names == ("glioma", "meningioma", "pituitary")  # sorted folder names
    np.testing.assert_array_equal(ds.y, [0, 0, 1, 1, 2])
    assert ds.x.shape == (5, 6, 5, 1) and ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x[:, 0, 0, 0], np.array([10, 20, 30, 40, 250]) / 255, rtol=1e-6)


def test_folder_with_rgb_images_loads_three_channels(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255
    root = make_folder(tmp_path, {"a": [rgb], "b": [gray(100, (4, 4))]})

    ds = load(root)

    assert ds.image_shape == (4, 4, 3)
    np.testing.assert_allclose(ds.x[0, 0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(ds.x[1, 0, 0], [100 / 255] * 3, rtol=1e-6)  # gray replicated


def test_folder_channels_option_converts_rgb_to_gray_and_back(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200
    root = make_folder(tmp_path, {"a": [rgb], "b": [rgb]})

    as_gray = load(root, channels=1)
    assert as_gray.image_shape == (4, 4, 1)
    np.testing.assert_allclose(as_gray.x[0, 0, 0, 0], round(0.587 * 200) / 255, atol=1 / 255)

    root2 = make_folder(tmp_path / "g", {"a": [gray(60)], "b": [gray(70)]})
    assert load(root2).image_shape == (6, 5, 1)
    assert load(root2, channels=3).image_shape == (6, 5, 3)


def test_folder_images_of_different_sizes_need_an_image_size(tmp_path):
    root = make_folder(tmp_path, {"a": [gray(10, (8, 8)), gray(10, (8, 8))], "b": [gray(10, (4, 6))]})

    with pytest.raises(DataError, match=r"differ in size \(8x8: 2 .*, 4x6: 1 \(e\.g\. b/000\.png\).*image_size"):
        load(root)

    ds = load(root, image_size=(5, 7))
    assert ds.x.shape == (3, 5, 7, 1)
    np.testing.assert_allclose(ds.x, 10 / 255, rtol=1e-5)  # a flat image stays flat


def test_folder_image_size_resizes_every_image(tmp_path):
    left_dark = np.zeros((8, 8), np.uint8)
    left_dark[:, 4:] = 255
    root = make_folder(tmp_path, {"a": [left_dark], "b": [left_dark]})

    ds = load(root, image_size=4)

    assert ds.x.shape == (2, 4, 4, 1)
    assert ds.x[0, :, 0, 0].max() < 0.1 and ds.x[0, :, 3, 0].min() > 0.9


def test_shrinking_averages_pixels_instead_of_dropping_them(tmp_path):
    checker = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    root = make_folder(tmp_path, {"a": [checker], "b": [checker]})

    ds = load(root, image_size=(4, 4))

    np.testing.assert_allclose(ds.x, 0.5, atol=1 / 255)  # not a grid of 0s or of 1s


def test_folder_split_subfolder_is_read(tmp_path):
    make_folder(tmp_path / "train", {"glioma": [gray(1), gray(2)], "notumor": [gray(3)]})
    make_folder(tmp_path / "test", {"glioma": [gray(200)], "notumor": [gray(201)]})

    ds = load(tmp_path, split="test")

    assert len(ds) == 2 and ds.class_names == ("glioma", "notumor")
    np.testing.assert_allclose(ds.x[:, 0, 0, 0], np.array([200, 201]) / 255, rtol=1e-6)
    assert len(load(tmp_path, split="train")) == 3


def test_folder_of_splits_without_split_asks_for_one(tmp_path):
    make_folder(tmp_path / "train", {"glioma": [gray(1)]})
    make_folder(tmp_path / "test", {"glioma": [gray(1)]})
    with pytest.raises(DataError, match=r"split folders \(test, train\): pass split="):
        load(tmp_path)
    with pytest.raises(DataError, match=r"no 'val' split here; it holds test, train"):
        load(tmp_path, split="val")


def test_folder_with_class_folders_and_a_split_lists_what_exists(tmp_path):
    make_folder(tmp_path, {"glioma": [gray(1)], "meningioma": [gray(2)]})
    with pytest.raises(DataError, match=r"no 'train' split here; it holds glioma, meningioma; .*omit split="):
        load(tmp_path, split="train")


def test_split_must_be_a_plain_name(tmp_path):
    make_folder(tmp_path / "data", {"a": [gray(1)]})
    with pytest.raises(DataError, match="plain name"):
        load(tmp_path / "data", split="../data")


def test_corrupt_images_are_all_reported_by_name(tmp_path):
    root = make_folder(tmp_path, {"glioma": [gray(1), gray(2)], "notumor": [gray(3)]})
    (root / "glioma" / "scan-7.png").write_bytes(b"definitely not a png")
    whole = (root / "notumor" / "000.png").read_bytes()
    (root / "notumor" / "cut.png").write_bytes(whole[: len(whole) // 2])  # header fine, pixels cut

    with pytest.raises(DataError) as info:
        load(root)

    message = str(info.value)
    assert "2 image file(s) could not be read" in message
    assert "glioma/scan-7.png" in message and "notumor/cut.png" in message
    assert "glioma/000.png" not in message  # good files are not blamed


def test_empty_class_folders_are_listed(tmp_path):
    root = make_folder(tmp_path, {"glioma": [gray(1)]})
    (root / "notumor").mkdir()
    (root / "pituitary").mkdir()
    (root / "pituitary" / "readme.txt").write_text("not an image")

    with pytest.raises(DataError, match=r"without images \(PNG, JPEG, DICOM or NIfTI\): notumor, pituitary"):
        load(root)


def test_folder_without_class_subfolders_explains_the_layout(tmp_path):
    save_png(tmp_path / "scan.png", gray(1))
    with pytest.raises(DataError, match=r"no class folders found \(it holds images directly.*one subfolder"):
        load(tmp_path)

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no class folders found; expected one subfolder"):
        load(tmp_path / "empty")


def test_hidden_files_and_folders_are_ignored(tmp_path):
    root = make_folder(tmp_path, {"a": [gray(1)], "b": [gray(2)]})
    (root / ".DS_Store").write_bytes(b"\0junk")
    (root / "a" / ".DS_Store").write_bytes(b"\0junk")
    (root / "a" / "._000.png").write_bytes(b"\0resource fork")
    make_folder(root / ".cache", {"c": [gray(3)]})
    (root / ".thumbs").mkdir()

    ds = load(root)

    assert ds.class_names == ("a", "b") and len(ds) == 2


def test_jpeg_images_load_close_to_their_pixels(tmp_path):
    for name, value in (("a", 60), ("b", 190)):
        path = tmp_path / name / "x.JPG"
        path.parent.mkdir()
        Image.fromarray(gray(value, (8, 8))).save(path, format="JPEG", quality=95)

    ds = load(tmp_path)

    np.testing.assert_allclose(ds.x[:, 4, 4, 0], np.array([60, 190]) / 255, atol=3 / 255)


def test_16_bit_png_keeps_its_precision(tmp_path):
    pixels = np.array([[0, 1000], [40000, 65535]], np.uint16)
    root = make_folder(tmp_path, {"a": [pixels], "b": [pixels]})

    ds = load(root)

    assert ds.image_shape == (2, 2, 1)
    np.testing.assert_allclose(ds.x[0, ..., 0], pixels / 65535, rtol=1e-6)
    assert load(root, channels=3).image_shape == (2, 2, 3)


def test_folder_limit_first_keeps_the_first_files_in_order(tmp_path):
    root = make_folder(tmp_path, {"a": [gray(1), gray(2)], "b": [gray(3)]})

    ds = load(root, limit=2, sampling="first")

    np.testing.assert_allclose(ds.x[:, 0, 0, 0], np.array([1, 2]) / 255, rtol=1e-6)
    assert ds.class_names == ("a", "b")


def test_folder_limit_takes_each_class_by_default(tmp_path):
    root = make_folder(tmp_path, {"a": [gray(1), gray(2)], "b": [gray(3)]})

    ds = load(root, limit=2)

    assert ds.y.tolist() == [0, 1]
    np.testing.assert_allclose(ds.x[1, 0, 0, 0], 3 / 255, rtol=1e-6)


# ---- naming and options --------------------------------------------------------------------
def test_missing_path_is_reported_as_unknown_data_set(tmp_path):
    with pytest.raises(DataError, match=r"no data set named '.*nowhere': not a file or folder"):
        load(tmp_path / "nowhere")


def test_unsupported_file_type_is_refused(tmp_path):
    (tmp_path / "scan.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"unsupported file type '\.csv'"):
        load(tmp_path / "scan.csv")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"image_size": (0, 4)}, "image_size"),
        ({"image_size": (4, 4, 4, 1)}, "image_size"),
        ({"image_size": "big"}, "image_size"),
        ({"channels": 2}, "channels"),
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
    ],
)
def test_bad_options_are_refused(tmp_path, options, message):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2, 2), np.uint8), y=[0, 1])
    with pytest.raises(DataError, match=message):
        load(tmp_path / "d.npz", **options)


def test_named_data_sets_are_consulted_before_the_file_system(tmp_path, monkeypatch):
    """A data-set plugin of the registry given (a real one, registered as a plugin author would)."""
    import types

    from egide.core import DatasetSource, PluginSource, Registry, hookimpl

    calls = []

    class Phantom(DatasetSource):
        name, title = "phantom", "A phantom"

        def load(self, split=None):
            calls.append(split)
            return egide.Dataset(np.zeros((4, 3, 3, 1), np.float32), np.array([0, 1, 0, 1]), ("a", "b"))

    module = types.ModuleType("phantom_plugin")
    module.egide_register_datasets = hookimpl(lambda register: register(Phantom))
    reg = Registry()
    assert reg.register_module(module, PluginSource("phantom")), reg.failures
    monkeypatch.chdir(tmp_path)
    (tmp_path / "phantom").mkdir()  # a folder of the same name does not win

    ds = load("phantom", split="test", limit=3, image_size=(2, 2), registry=reg)

    assert calls == ["test"] and ds.x.shape == (3, 2, 2, 1) and set(ds.y.tolist()) == {0, 1}


# ---- Dataset -------------------------------------------------------------------------------
def small_dataset(n=10, shape=(4, 4, 1)) -> egide.Dataset:
    x = np.linspace(0, 1, n * int(np.prod(shape)), dtype=np.float32).reshape(n, *shape)
    return egide.Dataset(x, np.arange(n) % 3, ("a", "b", "c"))


@pytest.mark.parametrize(
    "x, y, names, message",
    [
        (np.zeros((2, 2, 2, 1), np.uint8), [0, 1], ("a", "b"), r"floats .* x / 255"),
        (np.zeros((2, 2, 2), np.float32), [0, 1], ("a", "b"), r"x\[\.\.\., None\]"),
        (np.zeros((2, 2, 2, 1), np.float32), [0, 1, 1], ("a", "b"), "2 images but 3 labels"),
        (np.zeros((2, 2, 2, 1), np.float32), [0, 2], ("a", "b"), r"up to 2 but only 2 classes"),
        (np.zeros((2, 2, 2, 1), np.float32), [0, -1], ("a", "b"), ">= 0"),
        (np.zeros((2, 2, 2, 1), np.float32), [0, 1], "ab", "not one string"),
        (np.zeros((2, 2, 2, 1), np.float32), [0, 1], ("a", "a"), "distinct"),
        (np.zeros((0, 2, 2, 1), np.float32), [], ("a",), "the data set is empty"),
        (np.full((1, 2, 2, 1), 1.5, np.float32), [0], ("a",), "rescale"),
    ],
)
def test_dataset_refuses_inconsistent_contents(x, y, names, message):
    with pytest.raises(DataError, match=message):
        egide.Dataset(x, np.asarray(y), names)


def test_dataset_is_frozen_and_its_repr_is_a_summary():
    ds = small_dataset()
    with pytest.raises(AttributeError):
        ds.x = ds.x  # type: ignore[misc]
    assert repr(ds) == "<Dataset 10 images 4x4x1, 3 classes: a, b, c>"


def test_take_subset_and_batches():
    ds = small_dataset()

    first = ds.take(3)
    np.testing.assert_array_equal(first.x, ds.x[:3])
    assert first.class_names == ds.class_names

    picked = ds.subset([4, 1])
    np.testing.assert_array_equal(picked.y, [1, 1])
    np.testing.assert_array_equal(picked.x, ds.x[[4, 1]])
    masked = ds.subset(ds.y == 2)
    assert len(masked) == 3 and set(masked.y) == {2}

    parts = list(ds.batches(4))
    assert [len(xb) for xb, _ in parts] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in parts]), ds.x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in parts]), ds.y)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ds: ds.take(0), "positive"),
        (lambda ds: ds.subset(np.ones(3, bool)), r"one entry per image \(10\)"),
        (lambda ds: ds.subset([10]), r"0\.\.9"),
        (lambda ds: ds.subset(ds.y == 7), "selection is empty"),
        (lambda ds: ds.subset(["a"]), "boolean mask or integer indices"),
        (lambda ds: next(ds.batches(0)), "batch_size"),
    ],
)
def test_selection_mistakes_are_data_errors(call, message):
    with pytest.raises(DataError, match=message):
        call(small_dataset())


# ---- fitting a classifier (conftest: 8x8x1 inputs, classes horizontal, vertical, diagonal) --
def test_folder_of_larger_rgb_images_fits_the_classifier_and_keeps_its_accuracy(tmp_path, bars, clf):
    _, _, x_test, y_test = bars
    x_test, y_test = x_test[:60], y_test[:60]
    # Prefix the names so the sorted folders keep the model's class order.
    folders = ["0_horizontal", "1_vertical", "2_diagonal"]
    for i, (image, label) in enumerate(zip(x_test, y_test)):
        big = np.kron(image[..., 0], np.ones((2, 2)))  # 16x16, each pixel doubled
        rgb = np.repeat(np.round(big * 255).astype(np.uint8)[..., None], 3, axis=-1)
        save_png(tmp_path / folders[label] / f"{i:03d}.png", rgb)

    ds = load(tmp_path)
    assert ds.image_shape == (16, 16, 3)
    fitted = for_classifier(ds, clf)

    assert fitted.image_shape == (8, 8, 1) and fitted.class_names == tuple(folders)
    order = np.argsort(y_test, kind="stable")  # read class by class, files by name
    np.testing.assert_array_equal(fitted.y, y_test[order])
    # Shrinking averages each 2x2 block: the original pixels come back up to 8-bit rounding.
    np.testing.assert_allclose(fitted.x, x_test[order], atol=0.6 / 255)
    accuracy = float(np.mean(clf.predict(fitted.x) == fitted.y))
    assert accuracy >= 0.9
    assert ds.image_shape == (16, 16, 3)  # the original is left as it was
    assert for_classifier(ds.take(5), clf).image_shape == (8, 8, 1)  # a part is still images


def test_data_that_already_fits_is_returned_as_is(bars, clf):
    _, _, x_test, y_test = bars
    ds = egide.Dataset(x_test[:10], y_test[:10], ("horizontal", "vertical", "diagonal"))
    assert for_classifier(ds, clf) is ds


def test_class_count_mismatch_names_both_counts(clf):
    ds = egide.Dataset(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]), ("a", "b"))
    with pytest.raises(DataError, match=r"2 classes \(a, b\) but .* outputs 3"):
        for_classifier(ds, clf)


def test_channel_counts_other_than_gray_or_rgb_name_both_shapes(clf):
    x = np.zeros((2, 8, 8, 2), np.float32)
    ds = egide.Dataset(x, np.array([0, 1]), ("a", "b", "c"), from_images=True)
    with pytest.raises(DataError, match=r"images are 8x8x2 but .* expects 8x8x1: only grayscale"):
        for_classifier(ds, clf)


def test_arrays_of_another_shape_are_not_resampled_silently(tmp_path, bars, clf):
    _, _, x_test, y_test = bars
    big = np.kron(x_test[:6, ..., 0], np.ones((2, 2)))  # (6, 16, 16)
    np.savez(tmp_path / "d.npz", x=np.round(big * 255).astype(np.uint8), y=y_test[:6])

    with pytest.raises(DataError, match=r"images are 16x16x1 but .* expects 8x8x1.*image_size=\(8, 8\), channels=1"):
        for_classifier(load(tmp_path / "d.npz"), clf)

    fitted = for_classifier(load(tmp_path / "d.npz", image_size=(8, 8), channels=1), clf)
    np.testing.assert_allclose(fitted.x, x_test[:6], atol=0.6 / 255)


def test_guessed_class_names_grow_to_the_model_classes(tmp_path, bars, clf):
    _, _, x_test, _ = bars
    np.savez(tmp_path / "d.npz", x=x_test[:4], y=[0, 1, 1, 0])  # class 2 absent, names unset

    ds = load(tmp_path / "d.npz")
    assert ds.class_names == ("0", "1")

    assert for_classifier(ds, clf).class_names == ("0", "1", "2")


def test_a_sigmoid_model_given_three_classes_of_data_is_refused():
    binary = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")])
    ds = egide.Dataset(np.zeros((3, 8, 8, 1), np.float32), np.array([0, 1, 2]), ("a", "b", "c"))
    with pytest.raises(DataError, match="3 classes .* one sigmoid output: two classes"):
        for_classifier(ds, egide.Classifier.from_keras(binary))


def test_for_classifier_needs_an_egide_classifier(cnn_model):
    ds = egide.Dataset(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]), ("a", "b", "c"))
    with pytest.raises(DataError, match="Classifier.from_keras"):
        for_classifier(ds, cnn_model)
