"""`limit` draws a representative subset: stratified by class, seeded, replayable; a class the
draw leaves out is said so; held-out detector images never overlap the evaluated ones."""

import json

import numpy as np
import pytest

from egide.core.errors import DataError
from egide.lab.data import Draw
from egide.lab.data.sampling import _allocation

NAMES = ("glioma", "meningioma", "notumor", "pituitary")


def test_each_class_gets_its_share():
    y = np.repeat([0, 1, 2, 3], [60, 30, 9, 1])
    draw = Draw(10, seed=0)
    picked = draw.indices(y, NAMES)
    # 6, 3, 0.9 and 0.1 images by proportion; every class keeps one, the largest gives one back.
    assert np.bincount(y[picked], minlength=4).tolist() == [5, 3, 1, 1]
    assert draw.subset.class_counts == {"glioma": 5, "meningioma": 3, "notumor": 1, "pituitary": 1}
    # At least one image of every class present, when the limit allows it.
    assert _allocation(np.array([97, 1, 1, 1]), 4).tolist() == [1, 1, 1, 1]
    assert _allocation(np.array([50, 50]), 7).sum() == 7
    assert _allocation(np.array([3, 0, 5]), 4).tolist() == [2, 0, 2]


def test_a_draw_replays_under_its_seed_and_changes_with_it():
    y = np.repeat([0, 1, 2, 3], 30)
    first = Draw(20, seed=3).indices(y, NAMES)
    assert np.array_equal(first, Draw(20, seed=3).indices(y, NAMES))
    assert not np.array_equal(first, Draw(20, seed=4).indices(y, NAMES))
    assert np.all(np.diff(first) > 0)  # sorted, no repeats: read order kept


def test_excluded_images_are_never_drawn():
    y = np.repeat([0, 1], 20)
    held = Draw(10, seed=0).indices(y, ("a", "b"))
    rest = Draw(30, seed=0).indices(y, ("a", "b"), exclude=held)
    assert not set(held) & set(rest) and len(rest) == 30


def test_a_class_left_out_is_said_so():
    y = np.repeat([0, 1, 2, 3], 10)
    first = Draw(8, sampling="first")
    first.indices(y, NAMES)
    assert first.subset.missing == ["meningioma", "notumor", "pituitary"]
    assert "meningioma, notumor, pituitary" in first.subset.warning()
    tiny = Draw(2, seed=0)
    tiny.indices(y, NAMES)
    assert len(tiny.subset.missing) == 2 and "smaller than the number of classes" in tiny.subset.warning()
    whole = Draw(8, seed=0)
    whole.indices(y, NAMES)
    assert whole.subset.warning() is None


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_limits_and_samplings_are_refused(bad):
    with pytest.raises(DataError, match="limit"):
        Draw(bad)
    with pytest.raises(DataError, match="sampling must be one of"):
        Draw(4, sampling="alphabetical")


def test_limit_on_a_class_ordered_folder_evaluates_every_class(study_folder, tmp_path):
    """The user's path: `egide evaluate --model mine.keras --data scans --split test --limit 64`
    on Training/Testing folders stored class by class; then the report's config replays it."""
    from egide.lab.cli import main

    model, scans = study_folder
    out = tmp_path / "report"
    code = main(["evaluate", "--model", str(model), "--data", str(scans), "--split", "test", "--limit", "64",
                 "--attacks", "fgsm", "--eps", "8/255", "--no-progress", "--out", str(out)])
    assert code == 0
    doc = json.loads((out / "report.json").read_text())
    counts = doc["data"]["class_counts"]
    # 120 test scans, 30 per class: 64 of them are 16 per class.
    assert counts == {"glioma": 16, "meningioma": 16, "notumor": 16, "pituitary": 16}
    subset = doc["data"]["subset"]
    assert subset["sampling"] == "stratified" and subset["missing_classes"] == [] and subset["available"] == 120
    assert all(v == v for v in doc["clean_per_class_accuracy"].values())  # no class is "n/a"

    replay = tmp_path / "config.json"
    replay.write_text(json.dumps(doc["config"]))
    assert main(["evaluate", "--config", str(replay), "--no-progress", "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["data"]["subset"] == subset
    assert again["clean_accuracy"] == doc["clean_accuracy"]
    assert again["runs"][0]["robust_accuracy"] == doc["runs"][0]["robust_accuracy"]


def test_first_n_of_a_class_ordered_folder_warns_in_the_output_and_the_report(study_folder, tmp_path, capsys):
    from egide.lab.cli import main

    model, scans = study_folder
    code = main(["evaluate", "--model", str(model), "--data", str(scans), "--split", "test", "--limit", "20",
                 "--sampling", "first", "--attacks", "fgsm", "--eps", "8/255", "--no-progress",
                 "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "WARNING: the split has images of meningioma, notumor, pituitary but none of them is evaluated" in printed
    html = (tmp_path / "report.html").read_text()
    assert "none of them is evaluated" in html


def test_detectors_on_a_folder_without_val_from_the_command_line(study_folder, tmp_path, capsys):
    """No `val` split: the detectors are fitted on images held out of the evaluated split, never
    evaluated, and the command says which and how many."""
    from egide.lab.cli import main

    model, scans = study_folder
    code = main(["evaluate", "--model", str(model), "--data", str(scans), "--split", "Testing", "--limit", "40",
                 "--attacks", "fgsm", "--eps", "4/255", "--detectors", "feature-squeezing,kernel-density",
                 "--no-adaptive", "--no-progress", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "detectors fitted on 80 images held out of the evaluated 'Testing' split" in printed
    doc = json.loads((tmp_path / "report.json").read_text())
    fit, evaluated = doc["data"]["detector_fit"], doc["data"]["subset"]
    assert len(fit["indices"]) == 80 and len(evaluated["indices"]) == 40
    assert not set(fit["indices"]) & set(evaluated["indices"])
    assert fit["class_counts"] == {"glioma": 20, "meningioma": 20, "notumor": 20, "pituitary": 20}
    assert "none of them is evaluated" in (tmp_path / "report.html").read_text()
