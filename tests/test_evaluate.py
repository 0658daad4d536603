"""`egide evaluate`: the numbers are consistent, sanity checks catch masking, config errors are clear."""

import json

import keras
import numpy as np
import pytest

import egide
from egide.lab.cli import main
from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, eps_key, evaluate
from egide.lab.report.files import write_report

FAST = [
    AttackSpec(plugin="fgsm"),
    AttackSpec(plugin="pgd", params={"steps": 10}),
    AttackSpec(plugin="cw", params={"binary_search_steps": 3, "steps": 50}),
]
EPS = [0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def bars_data(bars):
    _, _, x_test, y_test = bars
    return egide.Dataset(x_test[:60], y_test[:60], ("horizontal", "vertical", "diagonal"))


@pytest.fixture(scope="module")
def report(clf, bars_data):
    config = EvaluationConfig(model="bars", data="bars", attacks=FAST, eps=EPS, gallery=4)
    return evaluate(config, classifier=clf, dataset=bars_data)


def test_runs_cover_every_attack_and_eps(report):
    runs = {(r.attack, r.eps) for r in report.runs if r.purpose == "evaluation"}
    assert runs == {("fgsm", e) for e in EPS} | {("pgd", e) for e in EPS} | {("cw", None)}
    assert [r for r in report.runs if r.purpose == "sanity"][0].eps == 1.0


def test_the_unbounded_run_uses_an_attack_whose_step_does_not_grow_with_the_budget(clf, bars_data):
    """APGD's first step is 2 eps: at eps 1 it only visits the box's corners, so an APGD-only
    evaluation's unbounded check is run by an installed attack with a step rule of its own
    (BIM, PGD or MIM), and passes on a model whose gradients work."""
    config = EvaluationConfig(model="bars", data="bars", attacks=[AttackSpec(plugin="apgd", params={"steps": 10})],
                              eps=[0.05], gallery=0)
    rep = evaluate(config, classifier=clf, dataset=bars_data)
    [sanity] = [r.attack for r in rep.runs if r.purpose == "sanity"]
    assert sanity in {"bim", "pgd", "mim"}
    assert {c.name: c.passed for c in rep.sanity}["unbounded-attacks-succeed"]


def test_worst_case_is_per_sample_over_attacks(report):
    for eps in EPS:
        at = [r for r in report.runs if r.eps == eps and r.purpose == "evaluation"]
        both = np.logical_and.reduce([r.robust for r in at])
        assert report.worst_case[eps_key(eps)] == pytest.approx(both.mean())
        assert report.worst_case[eps_key(eps)] <= min(r.robust_accuracy for r in at)


def test_robust_accuracy_falls_with_eps_and_checks_pass_on_an_honest_model(report):
    accs = [report.worst_case[eps_key(e)] for e in EPS]
    assert accs == sorted(accs, reverse=True) and accs[-1] < report.clean_accuracy
    assert all(check.passed for check in report.sanity), [c.message for c in report.sanity]
    (cw,) = report.minimal
    assert cw.attack == "cw" and cw.norm == "2" and cw.title == "Carlini & Wagner (L2)"
    assert len(cw.values) > 0 and min(cw.values) > 0


def test_a_one_eps_iterative_only_run_says_which_checks_could_not_run(clf, bars_data, tmp_path, capsys):
    """One ε, PGD only: two checks are "not applicable" with their reason, none says ok for them,
    and neither the report's headline nor the command line counts them as passed."""
    config = EvaluationConfig(model="bars", data="bars", attacks=[AttackSpec(plugin="pgd", params={"steps": 10})],
                              eps=[0.1], gallery=0)
    report = evaluate(config, classifier=clf, dataset=bars_data)
    states = {c.name: c.state for c in report.sanity}
    assert states == {"iterative-at-least-as-strong-as-fgsm": "not applicable",
                      "accuracy-falls-as-eps-grows": "not applicable",
                      "unbounded-attacks-succeed": "passed"}
    reasons = {c.name: c.message for c in report.sanity}
    assert "no single-step attack" in reasons["iterative-at-least-as-strong-as-fgsm"]
    assert "one ε only" in reasons["accuracy-falls-as-eps-grows"]
    assert [c["state"] for c in report.to_dict()["sanity_checks"]].count("not applicable") == 2
    write_report(report, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "1 sanity check passed" in html and "2 not applicable" in html
    assert "3 sanity checks passed" not in html and "All 3" not in html


def test_gallery_shows_correct_images_under_the_strongest_attack(report):
    assert len(report.gallery) == 4
    assert {g.label for g in report.gallery} == {"horizontal", "vertical", "diagonal"}
    for item in report.gallery:
        assert item.eps == max(EPS)
        assert np.abs(item.adversarial - item.clean).max() <= max(EPS) + 1e-5


def test_gradient_masking_is_flagged(cnn_model, bars_data):
    # An input quantiser in front of the model: its gradient is zero almost everywhere, so
    # gradient attacks stall and an unbounded attack cannot approach 100% success.
    masked = keras.Sequential([keras.Input((8, 8, 1)), _Quantise(), *cnn_model.layers])
    clf = egide.Classifier.from_keras(masked)
    data = bars_data.subset(np.flatnonzero(clf.predict(bars_data.x) == bars_data.y)[:30])
    config = EvaluationConfig(model="m", data="d", attacks=FAST[:2], eps=EPS, gallery=0)
    rep = evaluate(config, classifier=clf, dataset=data)
    flagged = {c.name for c in rep.sanity if not c.passed}
    assert "unbounded-attacks-succeed" in flagged, [c.message for c in rep.sanity]


class _Quantise(keras.layers.Layer):
    """Rounds inputs to 2 grey levels: piecewise constant, so its gradient is zero."""

    def call(self, x):
        return keras.ops.round(x)


def test_a_run_replays_from_its_report_json(report, clf, bars_data, tmp_path):
    """report.json holds everything needed to run the evaluation again: the same configuration
    (seeded attacks) on the same model and data gives the same numbers."""
    written = write_report(report, tmp_path)
    doc = json.loads(open(written["report.json"]).read())
    assert doc["config"]["eps"] == EPS and doc["config"]["attacks"][1]["params"] == {"steps": 10}
    assert {"egide", "tensorflow", "keras", "numpy", "plugins"} <= set(doc["environment"])

    again = evaluate(EvaluationConfig(**doc["config"]), classifier=clf, dataset=bars_data)
    replayed = write_report(again, tmp_path / "again")
    redo = json.loads(open(replayed["report.json"]).read())
    numbers = ("attack", "eps", "params", "robust_accuracy", "success_rate", "l2_mean", "linf_max")
    assert [{k: r[k] for k in numbers} for r in redo["runs"]] == [{k: r[k] for k in numbers} for r in doc["runs"]]
    assert redo["worst_case_robust_accuracy"] == doc["worst_case_robust_accuracy"]
    assert redo["clean_accuracy"] == doc["clean_accuracy"]
    assert redo["minimal_perturbations"] == doc["minimal_perturbations"]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"eps": []}, "at least one epsilon"),
        ({"eps": [2.0]}, "outside (0, 1]"),
        ({"attacks": [{"plugin": "fgsm", "params": {"eps": 0.1}}]}, "eps"),
        ({"attacks": [{"plugin": "nope"}]}, "no attack named 'nope'"),
        ({"attacks": [{"plugin": "pgd", "params": {"stepz": 3}}]}, "Did you mean 'steps'"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message, clf, bars_data):
    with pytest.raises(Exception) as info:
        evaluate(EvaluationConfig(**settings), classifier=clf, dataset=bars_data)
    assert message in str(info.value)


def test_cli_config_file_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text('{"eps": [0.0]}')
    assert main(["evaluate", "--config", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "outside (0, 1]" in capsys.readouterr().err
    assert main(["evaluate", "--eps", "4/0", "--out", str(tmp_path / "r")]) == 2
    assert "not a number" in capsys.readouterr().err


def test_image_folders_of_another_size_are_resized_and_said_so(tmp_path, cnn_model, bars, capsys):
    from PIL import Image

    _, _, x_test, y_test = bars
    for i in range(12):
        folder = tmp_path / "scans" / ["0_h", "1_v", "2_d"][y_test[i]]
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray((x_test[i, ..., 0] * 255).astype("uint8")).resize((16, 16), Image.NEAREST)
        big.save(folder / f"{i}.png")
    model = tmp_path / "m.keras"
    cnn_model.save(model)
    code = main(["evaluate", "--model", str(model), "--data", str(tmp_path / "scans"), "--split", "all",
                 "--attacks", "fgsm", "--eps", "0.1", "--out", str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "images were 16x16x1, resized to the model's input 8x8x1" in out.out
    assert json.loads((tmp_path / "r" / "report.json").read_text())["data"]["resized_from"] == [16, 16, 1]

    # Scans of several sizes (which a plain load refuses): each resized to the model's input, and
    # the report and the command say which sizes there were.
    extra = Image.fromarray((x_test[12, ..., 0] * 255).astype("uint8")).resize((12, 10), Image.NEAREST)
    extra.save(tmp_path / "scans" / ["0_h", "1_v", "2_d"][y_test[12]] / "12.png")
    from egide.lab.data import MixedSizesError, load

    with pytest.raises(MixedSizesError, match="differ in size"):
        load(tmp_path / "scans", split="all")
    code = main(["evaluate", "--model", str(model), "--data", str(tmp_path / "scans"), "--split", "all",
                 "--attacks", "fgsm", "--eps", "0.1", "--out", str(tmp_path / "r2"), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "the scans differ in size (16x16: 12 (e.g." in out.out and "10x12: 1" in out.out
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["data"]["images"] == 13 and "10x12: 1" in report["data"]["mixed_sizes"]
    assert "several sizes" in (tmp_path / "r2" / "report.html").read_text()
