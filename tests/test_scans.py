"""DICOM and NIfTI class-folder trees, read from the sample files that the pydicom and nibabel
wheels ship (found in the installed packages at test time, never copied into the repo): the
modality rescale, the VOI window, MONOCHROME1, compressed and multi-frame files, volumes cut into
slices, broken files named, formats not mixed; and split names as people write them."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest

from egide.core.errors import DataError
from egide.lab.data import load

DICOM = Path(pydicom.__file__).parent / "data" / "test_files"
NIFTI = Path(nibabel.__file__).parent / "tests" / "data"


def tree(root: Path, files: dict[str, Path]) -> Path:
    """root/<class>/<name> copies of the given sample files."""
    for target, source in files.items():
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / target)
    return root


def windowed(values, centre, width):
    return np.clip((values - (centre - 0.5)) / (width - 1) + 0.5, 0, 1)


def test_a_dicom_tree_reads_through_the_stored_window_and_compression_changes_nothing(tmp_path):
    root = tree(tmp_path, {"glioma/mr.dcm": DICOM / "MR_small.dcm", "meningioma/rle.dcm": DICOM / "MR_small_RLE.dcm",
                           "pituitary/big.dcm": DICOM / "MR_small_bigendian.dcm"})
    ds = load(root)
    assert ds.class_names == ("glioma", "meningioma", "pituitary") and ds.x.shape == (3, 64, 64, 1)
    raw = pydicom.dcmread(DICOM / "MR_small.dcm")
    expected = windowed(raw.pixel_array.astype(np.float64), 600, 1600)  # the file's stored window
    np.testing.assert_allclose(ds.x[0, ..., 0], expected, atol=1e-6)
    np.testing.assert_array_equal(ds.x[0], ds.x[1])  # RLE-compressed: the same pixels
    np.testing.assert_array_equal(ds.x[0], ds.x[2])  # big-endian: the same pixels
    declared = load(root, window=(1000, 500))
    np.testing.assert_allclose(declared.x[0, ..., 0], windowed(raw.pixel_array.astype(np.float64), 1000, 500), atol=1e-6)


def test_ct_values_go_through_the_rescale_to_hounsfield_units_before_the_window(tmp_path):
    root = tree(tmp_path, {"a/ct.dcm": DICOM / "CT_small.dcm"})
    raw = pydicom.dcmread(DICOM / "CT_small.dcm")
    hounsfield = raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    ds = load(root, window=(40, 400))  # a brain window in HU
    np.testing.assert_allclose(ds.x[0, ..., 0], windowed(hounsfield, 40, 400), atol=1e-6)


def test_monochrome1_is_inverted_so_tissue_stays_bright(tmp_path):
    raw = pydicom.dcmread(DICOM / "MR_small.dcm")
    raw.PhotometricInterpretation = "MONOCHROME1"
    (tmp_path / "b").mkdir()
    raw.save_as(tmp_path / "b" / "inverted.dcm")
    tree(tmp_path, {"a/plain.dcm": DICOM / "MR_small.dcm"})
    ds = load(tmp_path)
    np.testing.assert_allclose(ds.x[1], 1.0 - ds.x[0], atol=1e-6)


def test_multi_frame_files_give_one_image_per_frame_and_colour_becomes_gray_on_request(tmp_path):
    root = tree(tmp_path, {"a/two.dcm": DICOM / "SC_rgb_rle_2frame.dcm", "b/one.dcm": DICOM / "SC_rgb_rle.dcm"})
    ds = load(root)
    assert ds.x.shape == (3, 100, 100, 3) and list(ds.y) == [0, 0, 1]
    assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0 and ds.x.max() > 0.9
    assert load(root, channels=1, image_size=(32, 32)).x.shape == (3, 32, 32, 1)


def test_dicom_files_that_cannot_be_read_are_each_named_with_the_reason(tmp_path):
    root = tree(tmp_path, {"a/good.dcm": DICOM / "MR_small.dcm", "a/cut.dcm": DICOM / "MR_truncated.dcm",
                           "b/plan.dcm": DICOM / "rtplan.dcm", "b/jls.dcm": DICOM / "MR_small_jpeg_ls_lossless.dcm",
                           "b/text.dcm": DICOM / "README.txt"})
    with pytest.raises(DataError) as err:
        load(root)
    message = str(err.value)
    assert "4 of the DICOM files could not be read" in message and "good.dcm" not in message
    assert "a/cut.dcm: pixel data could not be decoded" in message
    assert "b/plan.dcm: no pixel data" in message
    assert "b/jls.dcm: pixel data could not be decoded (JPEG-LS Lossless" in message
    assert "b/text.dcm: not a DICOM file" in message


def test_nifti_volumes_are_cut_into_slices_along_the_declared_axis(tmp_path):
    root = tree(tmp_path, {"a/anat.nii": NIFTI / "anatomical.nii", "b/anat.nii": NIFTI / "anatomical.nii"})
    shape = nibabel.as_closest_canonical(nibabel.load(NIFTI / "anatomical.nii")).shape  # RAS: x, y, z
    axial = load(root)
    assert axial.x.shape == (2 * shape[2], shape[1], shape[0], 1)  # rows: anterior first
    coronal = load(root, slice_axis="coronal")
    assert coronal.x.shape == (2 * shape[1], shape[2], shape[0], 1)
    # Robust percentiles per volume: a few voxels saturate, most lie inside.
    x = axial.x[: shape[2]]
    assert x.min() == 0.0 and x.max() == 1.0 and 0.0005 < np.mean(x == 1.0) < 0.02
    with pytest.raises(DataError, match="slice_axis must be one of sagittal, coronal, axial"):
        load(root, slice_axis="oblique")


def test_a_4d_series_gives_the_slices_of_each_volume_and_empty_slices_can_be_dropped(tmp_path):
    data = nibabel.load(NIFTI / "example4d.nii.gz")
    volume = np.zeros((20, 20, 10), np.float32)
    volume[5:15, 5:15, 3:7] = 100.0 + np.arange(10 * 10 * 4).reshape(10, 10, 4)  # tissue in 4 slices
    (tmp_path / "b").mkdir()
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "b" / "blob.nii.gz")
    tree(tmp_path, {"a/series.nii.gz": NIFTI / "example4d.nii.gz"})
    ds = load(tmp_path, image_size=(32, 32))
    assert list(ds.y).count(0) == data.shape[2] * data.shape[3] and list(ds.y).count(1) == 10
    kept = load(tmp_path, image_size=(32, 32), skip_empty_slices=True)
    assert list(kept.y).count(1) == 4


def test_a_nifti_whose_header_promises_more_voxels_than_it_holds_is_named(tmp_path):
    tree(tmp_path, {"a/ok.nii": NIFTI / "anatomical.nii"})
    (tmp_path / "b").mkdir()
    whole = (NIFTI / "anatomical.nii").read_bytes()
    (tmp_path / "b" / "cut.nii").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"1 of the NIfTI volumes could not be read.*\n  b/cut\.nii: .*truncated"):
        load(tmp_path)


def test_a_tree_mixing_formats_is_refused_naming_both(tmp_path):
    tree(tmp_path, {"a/x.dcm": DICOM / "MR_small.dcm", "b/y.nii": NIFTI / "anatomical.nii"})
    with pytest.raises(DataError, match=r"mix formats: 1 DICOM files \(e\.g\. a/x\.dcm\), 1 NIfTI volumes"):
        load(tmp_path)


def test_split_names_as_people_write_them_and_all(tmp_path):
    tree(tmp_path, {"Training/a/1.dcm": DICOM / "MR_small.dcm", "Training/b/2.dcm": DICOM / "MR_small_RLE.dcm",
                    "Testing/a/3.dcm": DICOM / "MR_small.dcm", "Testing/b/4.dcm": DICOM / "MR_small_RLE.dcm",
                    "Testing/b/5.dcm": DICOM / "MR_small_bigendian.dcm"})
    assert len(load(tmp_path, "test")) == 3 and len(load(tmp_path, "TRAIN")) == 2
    both = load(tmp_path, "all")
    assert len(both) == 5 and both.class_names == ("a", "b")
    with pytest.raises(DataError, match="no 'val' split here; it holds Testing, Training"):
        load(tmp_path, "val")


def test_split_aliases_and_all_for_npz_and_named_data(tmp_path):
    x = np.zeros((4, 8, 8, 1), np.float32)
    np.savez(tmp_path / "d.npz", x_training=x, y_training=[0, 1, 0, 1], x_valid=x[:2], y_valid=[0, 1])
    assert len(load(tmp_path / "d.npz", "train")) == 4 and len(load(tmp_path / "d.npz", "validation")) == 2
    assert len(load(tmp_path / "d.npz", "all")) == 6
    assert len(load("brain-tumor-phantom", "Testing")) == len(load("brain-tumor-phantom", "test"))
    assert len(load("brain-tumor-phantom", "all")) == len(load("brain-tumor-phantom"))


def test_one_command_one_report_on_a_dicom_tree_and_a_0_255_sigmoid_model(tmp_path):
    """`egide evaluate --model my.keras --data scans/`: scans of another size and channel count
    than the model's, a model that wants 0..255 pixels and has one sigmoid output."""
    import json

    import keras

    from egide.lab.cli import main

    scans = tree(tmp_path / "scans", {"Testing/notumor/a.dcm": DICOM / "MR_small.dcm",
                                      "Testing/notumor/b.dcm": DICOM / "MR_small_bigendian.dcm",
                                      "Testing/tumor/c.dcm": DICOM / "MR_small_RLE.dcm",
                                      "Testing/tumor/d.dcm": DICOM / "MR_small_implicit.dcm"})
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.save(tmp_path / "my.keras")
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(tmp_path / "my.keras"), "--data", str(scans), "--split", "test",
                 "--attacks", "fgsm", "--eps", "4/255", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_range"] == [0, 255]
    assert report["model"]["input_range_source"].startswith("detected: Rescaling")
    assert report["model"]["num_classes"] == 2 and "[0, z]" in report["model"]["logits"]
    assert report["data"]["resized_from"] == [64, 64, 1] and report["data"]["class_names"] == ["notumor", "tumor"]
    page = (out / "report.html").read_text()
    assert "pixels 0..255" in page and "detected: Rescaling" in page
    assert "resized</strong> from 64×64×1 to 16×16×3" in page and "tumor <span class=\"muted\">→ output 1" in page
