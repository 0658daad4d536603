"""The small things a new user met on their own study, each held: model-file errors before
TensorFlow and in the page's words, one default port, the tests' plugins out of the lab, progress
that ends at its total, a CLI attack that says which images its limit drew."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from egide.lab import cli
from egide.lab.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_a_model_file_that_is_not_one_is_refused_before_tensorflow_starts(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("hello")

    def no_tensorflow():
        raise AssertionError("TensorFlow was started before the model file was checked")

    monkeypatch.setattr(cli, "import_tensorflow_quietly", no_tensorflow)
    assert main(["evaluate", "--model", str(fake), "--limit", "4"]) == 2
    said = capsys.readouterr().err
    assert "fake.keras is not a .keras archive (a zip written by model.save)" in said
    assert "File not found" not in said
    assert main(["attack", "--model", str(tmp_path / "nowhere.h5"), "--data", "x", "--attack", "fgsm",
                 "--out", str(tmp_path / "a.npz")]) == 2
    assert "nowhere.h5: model file not found" in capsys.readouterr().err


def test_the_page_upload_says_the_same_as_the_command_line(tmp_path):
    from egide.core.model_file import model_file_problem

    fake = tmp_path / "fake.keras"
    fake.write_text("hello")
    assert model_file_problem(fake, "fake.keras") == "fake.keras is not a .keras archive (a zip written by model.save)"


def test_one_default_port_everywhere():
    args = cli._parser().parse_args(["serve"])
    assert args.port is None and cli.DEFAULT_PORT == 8000  # None: EGIDE_PORT, else the default
    assert "default 8000" in cli._parser()._subparsers._group_actions[0].choices["serve"].format_help()
    assert '"${EGIDE_PORT:-8000}"' in (ROOT / "scripts" / "run.sh").read_text()
    assert "http://127.0.0.1:8000/" in (ROOT / "README.md").read_text()


def test_the_lab_lists_only_the_built_ins_and_what_the_user_installed():
    """The tests' example plugin is on the tests' path only (scripts/test.sh): the environment
    that scripts/run.sh serves from never lists it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", "import egide, json; r = egide.registry(); "
                          "print(json.dumps([n for k in ('attack', 'detector') for n in r.names(k)]))"],
                         capture_output=True, text=True, env=env, cwd=ROOT / "scripts", timeout=120)
    assert out.returncode == 0, out.stderr
    names = json.loads(out.stdout.strip().splitlines()[-1])
    assert "fgsm" in names and "example-noise" not in names and "example-max-softmax" not in names
    import egide

    assert "example-noise" in egide.registry().names("attack")  # while the tests see it


def test_progress_ends_at_its_own_total(clf, bars):
    """A suite's later stages attack only what is still robust: the points they skip are counted
    at once, so the last progress report of a run is its total (no "396 / 448")."""
    import egide
    from egide.lab.evaluation.pipeline import evaluate

    _, _, x_test, y_test = bars
    data = egide.Dataset(x_test[:12], y_test[:12], ("horizontal", "vertical", "diagonal"))
    seen = []
    evaluate({"model": "bars", "data": "bars", "attacks": [{"plugin": "fgsm"}], "eps": [0.1],
              "suite": "quick", "sanity_checks": False, "gallery": 0},
             classifier=clf, dataset=data, progress=lambda done, total, label: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] and all(done <= total for done, total in seen)


def test_the_command_line_attack_says_which_images_its_limit_drew(study_folder, tmp_path, capsys):
    model, scans = study_folder
    out = tmp_path / "adv.npz"
    assert main(["attack", "--model", str(model), "--data", str(scans), "--split", "Testing", "--limit", "8",
                 "--attack", "fgsm", "--param", "eps=2/255", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "8 of 120 images, a seeded sample stratified by class (seed 0): glioma 2, meningioma 2" in printed
    assert "images classified right before the attack" in printed
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["subset"]["class_counts"] == {"glioma": 2, "meningioma": 2, "notumor": 2, "pituitary": 2}


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.5/255", 0.5 / 255), (" 0.0157 ", 0.0157), (0.25, 0.25)])
def test_one_budget_syntax(text, value):
    import egide
    from egide.lab.evaluation.pipeline import EvaluationConfig
    from egide.lab.report.model import eps_key as budget_text

    assert egide.registry().create("attack", "pgd", eps=text).params.eps == pytest.approx(value)
    assert EvaluationConfig(model="m", data="d", eps=[text]).eps == [pytest.approx(value)]
    assert budget_text(8 / 255) == "8/255" and budget_text(0.5 / 255) == "0.5/255" and budget_text(0.01) == "0.01"
    assert budget_text(0.1) == "0.1"  # 25.5/255, but a short decimal reads better


def test_a_guard_that_flags_every_clean_scan_is_called_meaningless():
    """On a user's small held-out part a detector's threshold may not hold (Mahalanobis on 56
    images flagged 100% of the clean scans): "correct or flagged" is then 100% and means nothing."""
    from egide.lab.guard.evaluation import GuardEvaluation

    def guard(flagged):
        return GuardEvaluation(detector={}, threshold=1.0, images=64, clean_accuracy=0.9, clean_flagged=flagged,
                               target_fpr=0.05)

    assert guard(0.08).threshold_fails() is None and guard(0.15).threshold_fails() is None
    said = guard(1.0).threshold_fails()
    assert "flags 100% of the clean scans where it was fitted for 5%" in said and "means nothing" in said
    assert guard(1.0).to_dict()["threshold_fails"] == said
