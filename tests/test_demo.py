"""The built-in demo: named model and data resolve everywhere, the model is accurate, and
`egide train` trains and saves a model."""

import json

import numpy as np
import pytest

import egide
from egide.lab.cli import main
from egide.core.errors import ModelError
from examples.bars import CLASSES


@pytest.fixture(scope="module")
def demo():
    return egide.Classifier.load("brain-tumor-cnn"), egide.datasets.load("brain-tumor-phantom", split="test")


def test_demo_model_reaches_95_percent_on_the_demo_test_split(demo):
    clf, test = demo
    assert clf.input_shape == (64, 64, 1) and clf.num_classes == 4
    assert test.class_names == ("glioma", "meningioma", "notumor", "pituitary")
    accuracy = float((clf.predict(test.x) == test.y).mean())
    assert accuracy >= 0.95, f"demo model accuracy {accuracy:.1%}"


def test_unknown_model_names_are_clear_errors():
    with pytest.raises(ModelError, match="no model named 'brain-tumour-cnn'.*brain-tumor-cnn"):
        egide.Classifier.load("brain-tumour-cnn")


def test_egide_train_trains_and_saves_atomically(tmp_path, bars, capsys):
    x_train, y_train, x_test, y_test = bars
    data = tmp_path / "bars.npz"
    np.savez(data, x_train=x_train[:600], y_train=y_train[:600], x_test=x_test, y_test=y_test,
             class_names=np.array(CLASSES))
    out = tmp_path / "model.keras"
    code = main(["train", "--data", str(data), "--out", str(out), "--epochs", "3",
                 "--learning-rate", "0.003", "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "epoch 3/3" in text and "test accuracy" in text
    clf = egide.Classifier.load(out)
    assert clf.num_classes == 3 and clf.input_shape == (8, 8, 1)
    assert (clf.predict(x_test) == y_test).mean() > 0.6  # learned something in 3 epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.npz", "model.keras"]  # no leftovers


def test_evaluate_cli_writes_both_reports(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["evaluate", "--limit", "24", "--attacks", "fgsm,pgd", "--eps", "2/255,8/255",
                 "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "worst case" in text and "eps 8/255" in text
    doc = json.loads((out / "report.json").read_text())
    assert doc["data"]["images"] == 24 and doc["model"]["name"]
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
