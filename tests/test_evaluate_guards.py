"""`egide evaluate` with defenses and detectors: both attack views side by side, ROC per attack,
the transfer table for supervised detectors, and clear configuration errors.

The defenses and detectors here are defined in the test (a quantiser with no gradient, a
trainer, a supervised distance detector) so the pipeline is checked on behaviour we control;
the built-in plugins get their own tests.
"""

import json
import types

import numpy as np
import pytest
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field

import egide
from egide.core import Defense, Detector, Preprocessor, hookimpl
from egide.lab.cli import main
from egide.core.errors import ParameterError
from egide.lab.evaluation.pipeline import AttackSpec, DefenseSpec, DetectorSpec, EvaluationConfig, evaluate
from egide.core.registry import PluginSource, Registry
from egide.lab.report.files import write_report

EPS = [0.05, 0.1]
ATTACKS = [AttackSpec(plugin="fgsm"), AttackSpec(plugin="pgd", params={"steps": 10})]
CLASSES = ("horizontal", "vertical", "diagonal")


class Quantiser(Preprocessor):
    """Rounds to 4 levels: no gradient at all, so a non-adaptive attacker is blind."""

    name = "test-quantiser"
    title = "Test quantiser"

    def transform(self, x, rng, clip):
        return tf.round(x * 3.0) / 3.0


class Trainer(Defense):
    name = "test-trainer"
    title = "Test trainer"
    needs_training_data = True


class DistanceDetector(Detector):
    """Supervised: how much closer an input is to the adversarial mean than to the clean one."""

    name = "test-distance"
    title = "Test distance detector"
    supervised = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        fpr: float = Field(0.05, gt=0, lt=1)

    def _fit(self, clf, x_clean, x_adv):
        self.clean_mean, self.adv_mean = x_clean.mean(0), x_adv.mean(0)

    def _score(self, clf, x):
        def dist(m):
            return ((x - m) ** 2).reshape(len(x), -1).sum(1)

        return dist(self.clean_mean) - dist(self.adv_mean)


@pytest.fixture(scope="module")
def reg():
    module = types.ModuleType("test_guard_plugins")

    @hookimpl
    def egide_register_defenses(register):
        register(Quantiser)
        register(Trainer)

    @hookimpl
    def egide_register_detectors(register):
        register(DistanceDetector)

    module.egide_register_defenses = egide_register_defenses
    module.egide_register_detectors = egide_register_detectors
    registry = Registry.load()
    assert registry.register_module(module, PluginSource("test-guards"))
    return registry


@pytest.fixture(scope="module")
def data(bars):
    x_train, y_train, x_test, y_test = bars
    return (egide.Dataset(x_test[:60], y_test[:60], CLASSES),
            egide.Dataset(x_train[:200], y_train[:200], CLASSES))


@pytest.fixture(scope="module")
def report(reg, clf, data):
    test, train = data
    config = EvaluationConfig(
        model="bars", data="bars", attacks=ATTACKS, eps=EPS, gallery=0, sanity_checks=False,
        defenses=[DefenseSpec(plugin="test-quantiser")],
        detectors=[DetectorSpec(plugin="example-max-softmax"), DetectorSpec(plugin="test-distance")],
        detection_eps=0.1,
    )
    return evaluate(config, registry=reg, classifier=clf, dataset=test, detector_dataset=train)


def test_a_gradient_free_defense_is_broken_by_the_adaptive_attack_and_flagged(report):
    (d,) = report.defenses
    assert d.view == "BPDA"
    assert {(r.attack, r.eps) for r in d.runs} == {(a, e) for a in ("fgsm", "pgd") for e in EPS}
    for run in d.runs:
        # The non-adaptive attack sees a zero gradient: PGD's random start is all it has.
        assert run.adaptive <= run.non_adaptive
    at = {(r.attack, r.eps): r for r in d.runs}
    assert at[("pgd", 0.1)].non_adaptive - at[("pgd", 0.1)].adaptive > 0.3
    assert d.masking and ("pgd" in d.masking or "fgsm" in d.masking)
    worst = d.worst_case["0.1"]
    assert worst["adaptive"] <= min(at[(a, 0.1)].adaptive for a in ("fgsm", "pgd"))


def test_an_unsupervised_detector_is_fitted_once_and_scored_on_every_attack(report):
    det = next(d for d in report.detectors if d.name == "example-max-softmax")
    assert not det.supervised and det.transfer == {}
    # Every (attack, eps) where some adversarial fooled the model; none are made up elsewhere.
    fooled = {(r.attack, r.eps) for r in report.runs if r.robust_accuracy < report.clean_accuracy}
    assert {(r.attack, r.eps) for r in det.runs} == fooled and ("pgd", 0.1) in fooled
    thresholds = {r.threshold for r in det.runs}
    assert len(thresholds) == 1  # one fit, one threshold for every attack
    for r in det.runs:
        assert 0.0 <= r.auc <= 1.0 and r.positives > 0
        fpr, tpr = np.array(r.roc).T
        assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert det.fit_images == 200


def test_a_supervised_detector_is_fitted_per_attack_with_a_transfer_table(report):
    det = next(d for d in report.detectors if d.name == "test-distance")
    assert det.supervised
    assert set(det.transfer) == {"fgsm", "pgd"}
    for fitted_on, row in det.transfer.items():
        assert set(row) == {"fgsm", "pgd"}
    # The main table holds each attack as scored by the detector fitted on it.
    assert all(r.fitted_on == r.attack for r in det.runs)


def test_the_report_shows_both_views_and_roc_curves(report, tmp_path):
    written = write_report(report, tmp_path)
    data = json.loads(open(written["report.json"]).read())
    run = data["defenses"][0]["runs"][0]
    assert set(run["robust_accuracy"]) == {"non_adaptive", "adaptive"}
    assert {d["detector"]["plugin"] for d in data["detectors"]} == {"example-max-softmax", "test-distance"}
    page = open(written["report.html"]).read()
    assert 'id="defenses"' in page and "masks gradients" in page
    assert 'id="detectors"' in page and "ROC curves of example-max-softmax" in page
    assert "Transfer: fitted on one attack" in page


def test_every_detector_is_also_attacked_as_a_guard(report, tmp_path):
    for d in report.detectors:
        pairs = d.guard.pairs()
        assert [plain.eps for plain, _ in pairs] == EPS
        for plain, adaptive in pairs:
            # The evaluation's own attacks are the non-adaptive attacker, per image the worst case.
            assert plain.attack == "fgsm+pgd" and adaptive.adaptive
            assert adaptive.guarded_robust_accuracy <= plain.guarded_robust_accuracy
            assert adaptive.robust_accuracy >= 0.0 and plain.images == 60
            # Neither test detector has a differentiable score: a surrogate stands in, said so.
            assert adaptive.through.startswith("surrogate feature-squeezing")
    written = write_report(report, tmp_path)
    data = json.loads(open(written["report.json"]).read())
    guard = data["detectors"][0]["guard"]
    assert {r["adaptive"] for r in guard["runs"]} == {False, True}
    assert set(guard["falls_to_adaptive_attack"]) == {str(e) for e in EPS}
    page = open(written["report.html"]).read()
    assert 'id="guard"' in page and "guarded robust accuracy" in page
    assert 'id="guard-test-distance"' in page


def test_no_adaptive_skips_the_guard_attack_and_says_so(reg, clf, data, tmp_path, capsys):
    from egide.lab.cli import _print_detectors

    test, train = data
    config = EvaluationConfig(
        attacks=[AttackSpec(plugin="fgsm")], eps=[0.1], gallery=0, sanity_checks=False,
        detectors=[DetectorSpec(plugin="example-max-softmax")], adaptive_detectors=False)
    report = evaluate(config, registry=reg, classifier=clf, dataset=test, detector_dataset=train)
    assert report.detectors[0].guard is None
    page = open(write_report(report, tmp_path)["report.html"]).read()
    assert "not attacked adaptively" in page
    _print_detectors(report)
    assert "not attacked adaptively (--no-adaptive)" in capsys.readouterr().out


def test_trainers_are_refused_with_the_way_out(reg, clf, data):
    config = EvaluationConfig(attacks=ATTACKS, eps=EPS, defenses=[DefenseSpec(plugin="test-trainer")])
    with pytest.raises(ParameterError, match="egide defend --defense test-trainer"):
        evaluate(config, registry=reg, classifier=clf, dataset=data[0])


def test_bad_guard_settings_are_clear():
    with pytest.raises(ValueError, match="detection_eps 0.3 must be one of the evaluated eps"):
        EvaluationConfig(eps=EPS, detection_eps=0.3)
    with pytest.raises(ValueError, match="each defense may appear once"):
        EvaluationConfig(defenses=[DefenseSpec(plugin="jpeg"), DefenseSpec(plugin="jpeg")])
    assert EvaluationConfig(eps=[1 / 255, 4 / 255, 8 / 255]).detection_budget() == pytest.approx(4 / 255)
    assert EvaluationConfig(eps=[0.1, 0.2, 0.3]).detection_budget() == 0.2


def test_cli_builds_defenses_and_detectors_from_names(tmp_path, capsys):
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"detectors": [{"plugin": "x", "params": {"fpr": 0.1}}]}))
    code = main(["evaluate", "--config", str(config), "--detectors", "x,y", "--defenses", "nope",
                 "--eot-samples", "4", "--model", "brain-tumor-cnn", "--limit", "4",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    from egide.lab.cli import _parser, evaluation_config

    args = _parser().parse_args(["evaluate", "--detectors", "lid", "--no-adaptive"])
    assert evaluation_config(args).adaptive_detectors is False
    assert evaluation_config(_parser().parse_args(["evaluate", "--ray"])).executor.ray == ""
    args = _parser().parse_args(["evaluate", "--ray", "10.0.0.5:6379", "--ray-gpus", "0.25"])
    executor = evaluation_config(args).executor
    assert (executor.ray, executor.cpus_per_task, executor.gpus_per_task) == ("10.0.0.5:6379", 1, 0.25)
    with pytest.raises(egide.EgideError, match="add --ray"):
        evaluation_config(_parser().parse_args(["evaluate", "--ray-gpus", "1"]))
    # The names were parsed (params from the file kept for x); the unknown defense is refused.
    assert code == 2 and "nope" in err
