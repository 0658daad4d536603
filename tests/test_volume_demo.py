"""The 3-D demo: the whole-brain phantom and the Conv3D model shipped for it."""

from __future__ import annotations

import json

import numpy as np
import pytest

import egide
from egide.plugins.datasets import brain_tumor_phantom_3d as phantom


def test_the_phantom_is_deterministic_balanced_and_in_range():
    x, y, bounds, lesion = phantom.render_all(24, 20, seed=3, truth=True)
    again, _, _, _ = phantom.render_all(24, 20, seed=3)
    other, _, _, _ = phantom.render_all(24, 20, seed=4)
    assert x.shape == (80, 24, 24, 24, 1) and x.dtype == np.float32
    assert np.array_equal(x, again) and not np.array_equal(x, other)
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert bounds == {"train": (0, 56), "val": (56, 68), "test": (68, 80)}
    for lo, hi in bounds.values():
        assert len(set(np.bincount(y[lo:hi], minlength=4))) == 1  # every class equally often in each split
    drawn = lesion.reshape(len(y), -1).max(axis=1)
    assert (drawn[y == phantom.NOTUMOR] == 0).all()
    assert (drawn[y != phantom.NOTUMOR] > 0.5).all()  # every tumour volume shows its lesion


def test_lesions_sit_where_their_kind_does():
    """Pituitary masses on the midline low in the head; gliomas inside the brain, off the midline."""
    x, y, _, lesion = phantom.render_all(32, 20, seed=0, truth=True)
    size = x.shape[1]
    for kind in (phantom.PITUITARY, phantom.GLIOMA):
        centres = np.array([np.argwhere(v > 0.5).mean(axis=0) for v in lesion[y == kind]])  # (z, row, column)
        off_midline = np.abs(centres[:, 2] - (size - 1) / 2)
        if kind == phantom.PITUITARY:
            assert (centres[:, 0] < size / 2).all() and (off_midline < 3).all()
        else:
            assert np.median(off_midline) > 2


def test_the_demo_model_classifies_the_phantoms_test_volumes():
    clf = egide.Classifier.load("brain-tumor-cnn-3d")
    test = egide.datasets.load("brain-tumor-phantom-3d", split="test")
    assert clf.input_shape == (32, 32, 32, 1) == test.image_shape
    accuracy = float((clf.predict(test.x) == test.y).mean())
    assert accuracy >= 0.7, f"the 3-D demo model scores {accuracy:.1%} on its test split"


@pytest.mark.slow
def test_the_3d_demo_is_evaluated_from_the_command_line_with_volume_views(tmp_path):
    from egide.lab.cli import main

    out = tmp_path / "report"
    code = main(["evaluate", "--model", "brain-tumor-cnn-3d", "--data", "brain-tumor-phantom-3d", "--limit", "3",
                 "--attacks", "pgd", "--suite", "fast", "--eps", "8/255", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_shape"] == [32, 32, 32, 1]
    assert [m["ran"] for m in report["suite"]["members"]][:1] == ["apgd-ce"]
    assert report["worst_case_robust_accuracy"]["8/255"] <= report["clean_accuracy"]
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html  # the gallery shows the volumes (as their mid-slices)
    assert "the one the attack changed most" in html  # and each card the slice it changed most
