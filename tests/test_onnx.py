"""ONNX model files: converted at load, checked against onnxruntime, refused with a reason when they
cannot be, and then attacked, evaluated and guarded exactly like a Keras model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import egide
from egide.core.errors import ModelError

pytest.importorskip("onnx2keras", reason="the onnx extra: pip install 'egide[onnx]'")

from onnx_models import batchnorm_residual, broken, demo_as_onnx, volume_zoo  # noqa: E402


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory):
    """The demo CNN's own weights as an ONNX file (NCHW), and the Keras demo classifier."""
    demo = egide.Classifier.load("brain-tumor-cnn")
    return demo_as_onnx(demo.model, tmp_path_factory.mktemp("onnx") / "demo.onnx"), demo


@pytest.fixture(scope="session")
def phantom():
    return egide.datasets.load("brain-tumor-phantom", split="test")


def test_a_converted_model_matches_onnxruntime_and_classifies_like_its_keras_original(demo_onnx, phantom):
    import onnxruntime

    path, demo = demo_onnx
    clf = egide.Classifier.load(path)
    assert clf.input_shape == (64, 64, 1) and clf.num_classes == 4
    conversion = clf.describe()["conversion"]
    assert conversion["max_abs_difference"] <= conversion["tolerance"] and conversion["probe_images"] == 8
    assert conversion["checked_against"].startswith("onnxruntime")
    # On the user's own images: NHWC in [0, 1] here, NCHW in onnxruntime, the same logits.
    x = phantom.x[:32]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"image": x.transpose(0, 3, 1, 2)})[0]
    ours = clf.predict_logits(x)
    assert np.abs(ours - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())
    assert (ours.argmax(1) == demo.predict_logits(x).argmax(1)).all()


def test_batchnorm_and_a_residual_connection_convert_within_tolerance(tmp_path):
    path = batchnorm_residual(tmp_path / "bn-res.onnx", size=32, channels=3)
    clf = egide.Classifier.load(path)
    assert clf.input_shape == (32, 32, 3)
    assert clf.describe()["conversion"]["max_abs_difference"] < 1e-4


def test_volume_networks_convert_within_tolerance_and_are_attacked_as_volumes(tmp_path):
    """(N, C, D, H, W) as MONAI's 3-D networks export, through egide's volume converter: every
    operator it knows, checked against onnxruntime, then attacked within its budget."""
    import onnxruntime

    for path in (batchnorm_residual(tmp_path / "bn-res-3d.onnx", size=12, channels=1, dims=3),
                 volume_zoo(tmp_path / "zoo.onnx", size=12)):
        clf = egide.Classifier.load(path)
        conversion = clf.describe()["conversion"]
        assert conversion["converter"].startswith("egide's volume converter")
        assert conversion["max_abs_difference"] <= conversion["tolerance"]
    assert clf.input_shape == (12, 12, 12, 2)
    x = np.random.default_rng(3).uniform(0, 1, (6, 12, 12, 12, 2)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"x": np.moveaxis(x, -1, 1)})[0]
    np.testing.assert_allclose(np.asarray(clf.model(x)), reference, atol=1e-5)
    pgd = egide.registry().create("attack", "pgd", eps=0.05, steps=5)
    result = pgd.run(clf, x, clf.predict(x), seed=0)
    assert np.abs(result.x_adv - x).max() <= 0.05 + 1e-6


@pytest.mark.parametrize("extra, message", [("resize", r"operators Resize of this volume network"),
                                            ("group", r"Conv in 2 groups")])
def test_what_the_volume_converter_does_not_rebuild_is_refused_by_name(tmp_path, extra, message):
    with pytest.raises(ModelError, match=message):
        egide.Classifier.load(volume_zoo(tmp_path / f"{extra}.onnx", extra=extra))


@pytest.mark.parametrize("kind, message", [
    ("two-inputs", r"2 inputs \(x, age\)"),
    ("dynamic-size", "dynamic size"),
    ("unsupported-op", "HardSwish cannot be converted"),
    ("segmentation", "expected class scores"),
    ("external-data", "stored in separate files"),
    ("custom-domain", "custom domains com.example"),
])
def test_models_that_cannot_be_converted_are_refused_with_the_reason(tmp_path, kind, message):
    path = broken(kind, tmp_path / f"{kind}.onnx")
    with pytest.raises(ModelError, match=message):
        egide.Classifier.load(path)


def test_not_an_onnx_file_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        egide.Classifier.load(path)


def test_standardisation_the_model_expects_happens_inside_the_classifier(tmp_path, phantom):
    """A PyTorch-style model that expects (v - mean) / std: budgets stay in image units."""
    path = batchnorm_residual(tmp_path / "std.onnx", size=64, channels=1)
    plain = egide.Classifier.load(path)
    standardized = egide.Classifier.load(path, normalize=([0.5], [0.25]))
    x = phantom.x[:4]
    assert standardized.describe()["conversion"]["max_abs_difference"] < 1e-4
    np.testing.assert_allclose(np.asarray(standardized.model(x)), np.asarray(plain.model((x - 0.5) / 0.25)),
                               rtol=1e-5, atol=1e-5)


def test_an_attack_and_an_evaluation_with_a_detector_run_on_an_onnx_model(demo_onnx, phantom, tmp_path):
    from egide.lab.cli import main

    path, demo = demo_onnx
    clf = egide.Classifier.load(path)
    x, y = phantom.x[:16], phantom.y[:16]
    pgd = egide.registry().create("attack", "pgd", eps=4 / 255, steps=10)
    on_onnx, on_keras = pgd.run(clf, x, y, seed=0), pgd.run(demo, x, y, seed=0)
    assert np.abs(on_onnx.x_adv - x).max() <= 4 / 255 + 1e-6
    assert on_onnx.robust_accuracy <= on_onnx.clean_accuracy
    # The same network: the same adversarial outcome as its Keras original, image by image.
    assert (on_onnx.y_pred_adv == on_keras.y_pred_adv).mean() >= 0.9

    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(path), "--limit", "24", "--attacks", "fgsm,pgd", "--eps", "4/255",
                 "--detectors", "feature-squeezing", "--no-adaptive", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    conversion = report["model"]["conversion"]
    assert conversion["from"] == "onnx"
    checked = conversion["on_evaluated_images"]  # the user's own images, not only the probes
    assert checked["images"] == 8 and checked["max_abs_difference"] <= checked["tolerance"]
    assert report["detectors"][0]["runs"]
    from egide.lab.report.card_build import build_card

    card = build_card(report)
    assert card.identity.conversion.startswith("converted from ONNX by onnx2keras")
    assert "8 probe images and 8 of the evaluated images" in card.identity.conversion


def test_trainers_refuse_a_converted_model_and_say_why(demo_onnx, tmp_path, capsys):
    from egide.lab.cli import main

    path, _ = demo_onnx
    code = main(["defend", "--defense", "adversarial-training", "--model", str(path), "--data", "brain-tumor-phantom",
                 "--out", str(tmp_path / "at.keras"), "--no-progress"])
    assert code == 2
    assert "trainers fine-tune Keras models" in capsys.readouterr().err
    assert not (tmp_path / "at.keras").exists()


@pytest.mark.slow
def test_the_standard_suite_runs_on_an_onnx_model(tmp_path):
    """AutoAttack's standard protocol, every member, on a converted network with BatchNormalization
    and a residual connection (the demo CNN converted is attacked like its Keras original above)."""
    from egide.lab.evaluation.pipeline import evaluate

    path = batchnorm_residual(tmp_path / "bn.onnx", size=64, channels=1)
    report = evaluate({"model": str(path), "limit": 8, "attacks": [{"plugin": "fgsm"}], "eps": ["4/255"],
                       "suite": "standard", "gallery": 0, "sanity_checks": False})
    members = [m.ran for m in report.suite.members]
    assert members == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert report.worst_case["4/255"] <= report.clean_accuracy
    assert report.model["conversion"]["from"] == "onnx"
