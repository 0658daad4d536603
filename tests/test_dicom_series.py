"""DICOM series as volumes: a folder of slice files per study (<class>/<study>/*.dcm) becomes one
volume, ordered by slice position, turned to display order whatever the acquisition plane, with
its voxel size; broken series are refused with what is wrong."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest

from egide.core.errors import DataError
from egide.lab.data import available_splits, load
from egide.lab.data.dicom_series import read_series
from egide.lab.data.nifti import read_volume

from dicom_series_files import axial_series, sagittal_series, write_slice

D, H, W = 6, 7, 5  # a volume of distinct sizes, so that a wrong turn cannot pass


def display_volume(seed: int = 0) -> np.ndarray:
    """(D, H, W) values: axial slices from inferior to superior, rows anterior to posterior,
    columns from the patient's right to left."""
    rng = np.random.default_rng(seed)
    return rng.integers(100, 4000, (D, H, W)).astype(np.uint16)


def test_a_series_is_one_volume_in_display_order_whatever_the_acquisition_plane(tmp_path):
    volume = display_volume()
    axial, spacing = read_series(axial_series(tmp_path / "axial", volume))
    sagittal, sagittal_spacing = read_series(sagittal_series(tmp_path / "sagittal", volume))
    assert axial.shape == (D, H, W, 1) and spacing == (2.0, 1.0, 1.0)
    assert sagittal_spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(sagittal, axial)
    # The same voxels written as NIfTI (RAS, 2 mm slices) read the same: one convention for both.
    data = volume[:, ::-1, ::-1].transpose(2, 1, 0).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(tmp_path / "same.nii.gz"))
    from_nifti, nifti_spacing = read_volume(tmp_path / "same.nii.gz")
    assert nifti_spacing == (2.0, 1.0, 1.0)
    np.testing.assert_allclose(axial, from_nifti, atol=1e-6)


def test_class_folders_of_studies_load_as_volumes_with_and_without_split_folders(tmp_path):
    for split in ("Training", "Testing"):
        for c, name in enumerate(("glioma", "notumor")):
            for study in range(2):
                axial_series(tmp_path / "split" / split / name / f"study-{study}", display_volume(10 * c + study))
                if split == "Training":
                    axial_series(tmp_path / "flat" / name / f"study-{study}", display_volume(10 * c + study))
    flat = load(tmp_path / "flat", slice_axis="volume", image_size=(8, 8, 8))
    assert flat.x.shape == (4, 8, 8, 8, 1) and flat.y.tolist() == [0, 0, 1, 1]
    assert flat.class_names == ("glioma", "notumor")
    assert available_splits(tmp_path / "flat", volumes=True) == []  # studies are not splits
    assert available_splits(tmp_path / "split", volumes=True) == ["Testing", "Training"]
    testing = load(tmp_path / "split", split="test", slice_axis="volume", image_size=(8, 8, 8))
    np.testing.assert_array_equal(testing.x, flat.x)
    both = load(tmp_path / "split", split="all", slice_axis="volume", image_size=(8, 8, 8))
    assert len(both) == 8


def test_a_broken_series_is_refused_naming_the_study_and_what_is_wrong(tmp_path):
    axial_series(tmp_path / "a" / "gap", display_volume(), skip={3})
    axial_series(tmp_path / "b" / "ok", display_volume())
    with pytest.raises(DataError, match=r"a/gap: a gap between slices \(a step of 4 mm where the others are 2 mm\)"):
        load(tmp_path, slice_axis="volume")
    mixed = tmp_path / "b" / "ok"
    write_slice(mixed / "other.dcm", display_volume()[0], (0, 0, 0.5), (1, 0, 0, 0, 1, 0), (1.0, 1.0), series="9.9")
    with pytest.raises(DataError, match=r"b/ok: it mixes 2 series \(6 of 1\.2\.3\.4, 1 of 9\.9\)"):
        load(tmp_path, slice_axis="volume")


def test_dicom_files_straight_in_class_folders_are_refused_for_a_volume_model_with_the_layout(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    write_slice(folder / "one.dcm", display_volume()[0], (0, 0, 0), (1, 0, 0, 0, 1, 0), (1.0, 1.0))
    with pytest.raises(DataError, match=r"one folder of slice files per study: <class>/<study>/\*\.dcm"):
        load(tmp_path, slice_axis="volume")


def test_a_tree_of_series_read_as_2d_images_says_what_it_holds_and_split_folders_of_slices_stay_splits(tmp_path):
    from egide.lab.data.folders import holds_series

    for name in ("glioma", "notumor"):
        axial_series(tmp_path / "series" / name / "study-0", display_volume())
    assert holds_series(tmp_path / "series")
    with pytest.raises(DataError, match=r"it holds DICOM series, one folder of slices per study"):
        load(tmp_path / "series")
    # <split>/<class>/*.dcm (named like splits): DICOM files of 2-D images, in split folders.
    for split in ("Training", "Testing"):
        for name in ("glioma", "notumor"):
            axial_series(tmp_path / "slices" / split / name, display_volume())
    assert not holds_series(tmp_path / "slices")
    assert len(load(tmp_path / "slices", split="Testing")) == 2 * D
