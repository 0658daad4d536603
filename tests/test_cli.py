"""The `egide` command: plugin listing, attacks end to end, and clear errors for user mistakes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from egide.lab.cli import main
from egide.lab.services import parse_param
from examples.bars import CLASSES
from plugin_dists import write_plugin_dist

EGIDE = str(Path(sys.executable).with_name("egide"))


@pytest.fixture(scope="module")
def files(tmp_path_factory, cnn_model, bars):
    """A saved model and an .npz data set with a test split, as a user would have them."""
    root = tmp_path_factory.mktemp("cli")
    model = root / "model.keras"
    cnn_model.save(model)
    data = root / "data.npz"
    _, _, x_test, y_test = bars
    np.savez(data, x_test=x_test[:40], y_test=y_test[:40], class_names=np.array(CLASSES))
    return model, data


def run_cli(*args, env=None):
    """Run the installed `egide` console script in a real process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([EGIDE, *args], capture_output=True, text=True, env=full_env, timeout=300)


def test_plugins_lists_builtins_and_the_installed_example():
    out = run_cli("plugins")
    assert out.returncode == 0, out.stderr
    assert "fgsm" in out.stdout and "Fast Gradient Sign Method" in out.stdout
    assert "example-noise" in out.stdout and "egide-example-plugin" in out.stdout


def test_plugins_json_gives_schemas_and_failures(tmp_path):
    root = write_plugin_dist(tmp_path, "broken-dist", {"broken_mod": "raise RuntimeError('kaput')\n"},
                             {"broken": "broken_mod"})
    lenient = {"PYTHONPATH": str(root), "EGIDE_STRICT_PLUGINS": "0"}  # the suite runs strict
    out = run_cli("plugins", "--json", env=lenient)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    fgsm = next(p for p in doc["plugins"]["attacks"] if p["name"] == "fgsm")
    assert fgsm["kind"] == "attack" and fgsm["version"] and "eps" in fgsm["schema"]["properties"]
    assert doc["failures"][0]["entry_point"] == "broken" and "kaput" in doc["failures"][0]["error"]
    table = run_cli("plugins", env=lenient)
    assert "1 plugin(s) failed to load" in table.stdout and "kaput" in table.stdout


def test_the_command_line_says_only_what_was_asked(files, tmp_path):
    """No TensorFlow start-up chatter (absl, CUDA stubs, oneDNN): `2>&1` output stays JSON."""
    out = run_cli("plugins", "--json")
    assert out.returncode == 0 and out.stderr == ""
    assert json.loads(out.stdout + out.stderr)["plugins"]["attacks"]
    model, data = files
    out = run_cli("attack", "--model", str(model), "--data", str(data), "--split", "test", "--limit", "8",
                  "--attack", "pgd", "--param", "steps=3", "--out", str(tmp_path / "a.npz"), "--json")
    assert out.returncode == 0 and out.stderr == ""
    assert json.loads(out.stdout)["images"] == 8


@pytest.mark.parametrize("command", ["plugins", "attack", "evaluate", "train", "defend", "serve"])
def test_every_subcommand_runs_as_a_module(command):
    """`python -m egide.lab.cli` is the same command line as `egide`, for every subcommand."""
    out = subprocess.run([sys.executable, "-m", "egide.lab.cli", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith(f"usage: egide {command}"), out.stderr


def test_serve_refuses_an_exposed_address_without_a_token():
    out = subprocess.run([sys.executable, "-m", "egide.lab.cli", "serve", "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k not in ("EGIDE_API_TOKEN", "EGIDE_TOKEN")})
    assert out.returncode == 2 and "refusing to bind 0.0.0.0 without a token" in out.stderr


def test_attack_writes_a_correct_result(files, tmp_path, clf):
    model, data = files
    out = tmp_path / "adv.npz"
    proc = run_cli("attack", "--model", str(model), "--data", str(data), "--split", "test",
                   "--attack", "fgsm", "--param", "eps=8/255", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    saved = np.load(out)
    x_test = np.load(data)["x_test"]
    assert saved["x_adv"].shape == x_test.shape
    assert np.abs(saved["x_adv"] - x_test).max() <= 8 / 255 + 1e-6
    np.testing.assert_array_equal(saved["y"], np.load(data)["y_test"])
    np.testing.assert_array_equal(saved["y_pred_adv"], clf.predict(saved["x_adv"]))
    assert summary["robust_accuracy"] == pytest.approx(np.mean(saved["y_pred_adv"] == saved["y"]))
    assert summary["params"]["eps"] == pytest.approx(8 / 255)
    assert json.loads(out.with_suffix(".json").read_text())["images"] == 40


def test_targeted_attack_from_the_cli(files, tmp_path):
    model, data = files
    out = tmp_path / "t.npz"
    code = main(["attack", "--model", str(model), "--data", str(data), "--split", "test",
                 "--attack", "fgsm", "--param", "targeted=true", "--param", "eps=0.3",
                 "--target", "vertical", "--out", str(out), "--no-progress"])
    assert code == 0
    assert (np.load(out)["target"] == CLASSES.index("vertical")).all()


@pytest.mark.parametrize(
    "extra, overrides, message",
    [
        (["--attack", "fgms"], {}, "Did you mean 'fgsm'"),
        (["--attack", "fgsm", "--param", "epz=0.1"], {}, "Did you mean 'eps'"),
        (["--attack", "fgsm", "--param", "eps=-1"], {}, "greater than 0"),
        (["--attack", "fgsm", "--param", "eps"], {}, "KEY=VALUE"),
        (["--attack", "fgsm"], {"--model": "missing.keras"}, "model file not found"),
        (["--attack", "fgsm"], {"--data": "missing.npz"}, "missing.npz"),
        (["--attack", "fgsm", "--param", "eps=2"], {}, "an L-inf budget is at most 1, the whole input range"),
        (["--attack", "fgsm", "--param", "eps=60", "--param", "norm=2"], {}, "exceeds the input range"),
        (["--attack", "fgsm", "--target", "next"], {}, "targeted=True"),
    ],
)
def test_user_errors_are_one_clear_line_and_exit_2(files, tmp_path, capsys, extra, overrides, message):
    model, data = files
    paths = {"--model": str(model), "--data": str(data), "--out": str(tmp_path / "o.npz"), **overrides}
    argv = ["attack", "--split", "test", "--no-progress", *extra]
    for flag, value in paths.items():
        argv += [flag, value]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_data_that_does_not_fit_the_model_is_a_clear_error(files, tmp_path, capsys):
    model, _ = files
    data = tmp_path / "big.npz"
    np.savez(data, x=np.zeros((4, 16, 16, 1), np.float32), y=np.zeros(4, np.int64))
    code = main(["attack", "--model", str(model), "--data", str(data), "--attack", "fgsm",
                 "--out", str(tmp_path / "o.npz"), "--no-progress"])
    assert code == 2 and "16" in capsys.readouterr().err


def test_user_error_from_a_real_process_has_no_traceback(files, tmp_path):
    model, data = files
    proc = run_cli("attack", "--model", str(model), "--data", str(data), "--attack", "nope",
                   "--out", str(tmp_path / "o.npz"))
    assert proc.returncode == 2
    assert "no attack named 'nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "text, expected",
    [("eps=8/255", ("eps", 8 / 255)), ("steps=10", ("steps", 10)), ("targeted=True", ("targeted", True)),
     ("norm=2", ("norm", 2)), ("norm=inf", ("norm", "inf")), ("step_size=null", ("step_size", None))],
)
def test_param_values_parse_like_a_user_means_them(text, expected):
    assert parse_param(text) == expected


# ---- egide attack --defense ----------------------------------------------------------------
@pytest.mark.parametrize("adaptive", [False, True])
def test_attack_through_a_preprocessing_defense_is_measured_on_the_defended_model(
    files, tmp_path, capsys, clf, adaptive
):
    import egide

    model, data = files
    out = tmp_path / "def.npz"
    argv = ["attack", "--model", str(model), "--data", str(data), "--split", "test",
            "--attack", "pgd", "--param", "eps=0.15", "--param", "steps=5",
            "--defense", "bit-depth", "--defense-param", "bits=3", "--out", str(out),
            "--json", "--no-progress"] + ([] if adaptive else ["--non-adaptive"])
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    saved = np.load(out)
    defended = egide.registry().create("defense", "bit-depth", bits=3).apply(clf)
    # Accuracy is that of the real defended model, whichever view the attack differentiated.
    np.testing.assert_array_equal(saved["y_pred_adv"], defended.predict(saved["x_adv"]))
    assert summary["robust_accuracy"] == pytest.approx(np.mean(saved["y_pred_adv"] == saved["y"]))
    assert summary["defense"] == {**defended.defense.config(), "adaptive": adaptive}
    assert np.abs(saved["x_adv"] - np.load(data)["x_test"]).max() <= 0.15 + 1e-6


def test_adaptive_attack_from_the_cli_breaks_a_quantiser_the_plain_one_cannot(files, tmp_path):
    model, data = files

    def robust(*extra):
        out = tmp_path / "r.npz"
        code = main(["attack", "--model", str(model), "--data", str(data), "--split", "test",
                     "--attack", "pgd", "--param", "eps=0.15", "--param", "steps=10",
                     "--defense", "bit-depth", "--defense-param", "bits=3", "--out", str(out),
                     "--no-progress", *extra])
        assert code == 0
        saved = np.load(out)
        return np.mean(saved["y_pred_adv"] == saved["y"])

    # Adaptive by default, as the API and the page.
    assert robust() < robust("--non-adaptive") - 0.3
    assert robust("--adaptive") == robust()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--defense", "jpg"], "Did you mean 'jpeg'"),
        (["--defense", "jpeg", "--defense-param", "quality=0"], "quality"),
        (["--defense", "bit-depth", "--defense-param", "bits=9"], "bits"),
        (["--adaptive"], "--adaptive needs --defense"),
        (["--non-adaptive"], "--non-adaptive needs --defense"),
        (["--defense-param", "bits=3"], "--defense-param needs --defense"),
        (["--defense", "adversarial-training"], "egide defend --defense adversarial-training"),
    ],
)
def test_bad_defense_flags_are_one_clear_line(files, tmp_path, capsys, extra, message):
    model, data = files
    code = main(["attack", "--model", str(model), "--data", str(data), "--attack", "fgsm",
                 "--out", str(tmp_path / "o.npz"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
