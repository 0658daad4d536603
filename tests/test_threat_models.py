"""The threat model of an evaluation (`norm`): L-inf, L2 or L1 budgets, the attacks run in it
(those without a version for it refused by name), the worst case and the suite measured in it,
and the report saying which norm its budgets are in."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import egide
from egide.core.errors import ParameterError
from egide.lab.evaluation.pipeline import EvaluationConfig, evaluate
from egide.lab.evaluation.suite import plan


@pytest.fixture(scope="module")
def bars_data(bars):
    _, _, x, y = bars
    return egide.Dataset(x[:24], y[:24], ("horizontal", "vertical", "diagonal"))


def test_each_norm_has_budgets_in_its_own_unit():
    assert EvaluationConfig(model="m", data="d").eps == pytest.approx([1 / 255, 2 / 255, 4 / 255, 8 / 255])
    assert EvaluationConfig(model="m", data="d", norm="L2").eps == [0.25, 0.5, 1.0]
    assert EvaluationConfig(model="m", data="d", norm="1").eps == [4.0, 8.0, 16.0]
    assert EvaluationConfig(model="m", data="d", norm="1", eps=[12]).eps == [12]
    with pytest.raises(ValidationError, match="epsilon 12 is outside"):
        EvaluationConfig(model="m", data="d", eps=[12])
    with pytest.raises(ValidationError, match="detectors are evaluated against L-inf attacks only"):
        EvaluationConfig(model="m", data="d", norm="2", detectors=[{"plugin": "lid"}])


def test_the_default_attacks_of_a_norm_are_those_that_have_it():
    attacks = [a.plugin for a in EvaluationConfig(model="m", data="d", norm="1").attacks]
    reg = egide.registry()
    assert "apgd" in attacks or "apgd" not in reg.names("attack")
    assert not {"fgsm", "pgd"} & set(attacks)  # no L1 versions
    assert all(reg.get("attack", a).budget == "fixed" for a in attacks)  # nothing minimises L1
    assert {a.plugin for a in EvaluationConfig(model="m", data="d", norm="2").attacks} >= {"pgd", "cw"}


def test_an_attack_without_a_version_for_the_norm_is_refused_by_name(clf, bars_data):
    with pytest.raises(ParameterError, match="'pgd' has no L1 version; attacks that have one: apgd"):
        evaluate({"model": "bars", "data": "bars", "norm": "1", "eps": [2], "attacks": [{"plugin": "pgd"}]},
                 classifier=clf, dataset=bars_data)


@pytest.mark.parametrize("norm, eps, measured", [("2", [0.3, 0.6], "l2"), ("1", [2.0, 4.0], "l1")])
def test_an_evaluation_runs_its_attacks_and_measures_its_worst_case_in_the_norm(norm, eps, measured, clf,
                                                                                  bars_data, registry):
    config = {"model": "bars", "data": "bars", "norm": norm, "eps": eps, "gallery": 2, "sanity_checks": False,
              "attacks": [{"plugin": "apgd", "params": {"steps": 10}}]}
    report = evaluate(config, classifier=clf, dataset=bars_data)
    runs = [r for r in report.runs if r.eps is not None]
    assert {r.norm for r in runs} == {norm}
    for r, e in zip(runs, eps):
        attack = registry.create("attack", "apgd", eps=e, norm=norm, steps=10)
        alone = attack.run(clf, bars_data.x, bars_data.y, seed=0)
        assert getattr(alone, measured).max() <= e * (1 + 1e-5)  # the budget holds
        assert r.robust_accuracy == pytest.approx(alone.robust_accuracy)
    assert list(report.worst_case.values()) == pytest.approx([r.robust_accuracy for r in runs])  # one attack
    assert report.config["norm"] == norm


def test_the_l1_suite_runs_autoattacks_l1_members(registry):
    ran, members = plan(registry, "standard", num_classes=4, randomized=False, norm="1")
    by_label = {m.label: m for m in members}
    assert list(by_label) == ["apgd-ce", "apgd-t", "fab-t", "square"] and all(m.ran for m in members)
    assert by_label["apgd-ce"].params["restarts"] == 5 and by_label["apgd-ce"].params["eps_schedule"]
    assert by_label["apgd-t"].params["target_classes"] == 5
    assert by_label["fab-t"].params["target_classes"] == 9 and by_label["square"].params["queries"] == 5000
    _, fast = plan(registry, "fast", num_classes=4, randomized=False, norm="1")
    assert fast[0].params["restarts"] == 8 and fast[0].params["eps_schedule"]  # 3 more starts than the reference
    # fast skips l1-APGD's last stage for points its 2 eps stage missed; standard runs every stage
    assert [m.params.get("stage_discard") for m in fast] == [True, True, None]
    assert not any(m.params.get("stage_discard") for m in members)
    # a member's fallback runs under L1 with the schedule as well
    _, three = plan(registry, "standard", num_classes=3, randomized=False, norm="1")
    assert three[1].ran == "apgd-dlr" and three[1].params["eps_schedule"]
    _, fast_linf = plan(registry, "fast", num_classes=4, randomized=False, norm="inf")
    assert fast_linf[0].params["restarts"] == 1


def test_a_member_without_a_version_for_the_norm_is_left_out_and_named(registry, monkeypatch):
    """A suite member that has no L1 version is not run at a budget it cannot hold."""
    from egide.lab.evaluation import suite

    pgd = suite.Member("pgd-member", "pgd", {"steps": 10})
    monkeypatch.setitem(suite.PROTOCOLS, "quick", [*suite.PROTOCOLS["quick"], pgd])
    _, members = plan(registry, "quick", num_classes=4, randomized=False, norm="1")
    assert [m.ran for m in members] == ["apgd-ce", "apgd-t", None]
    assert "'pgd' attack has no L1 version" in members[-1].note


def test_the_suite_is_never_kinder_than_its_first_member(clf, bars_data, registry):
    config = {"model": "bars", "data": "bars", "norm": "1", "eps": [2.0], "suite": "quick", "gallery": 0,
              "sanity_checks": False, "attacks": [{"plugin": "apgd", "params": {"steps": 10}}]}
    report = evaluate(config, classifier=clf, dataset=bars_data)
    suite_run = report.suite.runs[0]
    member = report.suite.members[0]
    alone = registry.create("attack", "apgd", eps=2.0, norm="1", **member.params).run(
        clf, bars_data.x, bars_data.y, seed=0)
    robust_alone = (alone.y_pred_adv == bars_data.y) & (alone.y_pred == bars_data.y)
    assert not np.any(suite_run.robust & ~robust_alone)  # a point the member breaks, the suite breaks
    assert suite_run.robust_accuracy <= min(suite_run.after)
    assert report.suite.norm == "1"


def test_the_report_says_the_norm_of_its_budgets(clf, bars_data, tmp_path):
    from egide.lab.report.files import write_report

    config = {"model": "bars", "data": "bars", "norm": "1", "eps": [2.0, 4.0], "gallery": 0,
              "sanity_checks": False, "attacks": [{"plugin": "apgd", "params": {"steps": 5}}]}
    written = write_report(evaluate(config, classifier=clf, dataset=bars_data), tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "L1" in html and "L∞ attack" not in html and "/255" not in html
    assert written["report.json"]


# ---- the fast suite ---------------------------------------------------------------------------
def test_malt_orders_targets_by_the_distance_to_their_boundary_in_a_linear_model():
    """For a linear classifier the first-order estimate is the exact distance to each boundary:
    the order must be that of (z_y - z_j) / ||w_y - w_j||_1 (L-inf budgets), not of the logits."""
    import keras
    import tensorflow as tf

    from egide.plugins.attacks.apgd import _nearest_boundaries_first

    rng = np.random.default_rng(3)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(6)])
    w = rng.normal(0, 1, (16, 6)).astype(np.float32) * rng.uniform(0.1, 3, 6).astype(np.float32)
    model.layers[-1].set_weights([w, rng.normal(0, 1, 6).astype(np.float32)])
    clf = egide.Classifier.from_keras(model)
    x = rng.uniform(0, 1, (8, 4, 4, 1)).astype(np.float32)
    z = clf.predict_logits(x)
    y = z.argmax(1)
    ranked = tf.cast(tf.argsort(z, axis=1, direction="DESCENDING", stable=True), tf.int64)
    got = _nearest_boundaries_first(clf, tf.constant(x), tf.constant(y), ranked, "inf", 5).numpy()
    for i in range(len(x)):
        others = [j for j in range(6) if j != y[i]]
        distance = {j: (z[i, y[i]] - z[i, j]) / np.abs(w[:, y[i]] - w[:, j]).sum() for j in others}
        assert got[i, 0] == y[i]
        assert list(got[i, 1:]) == sorted(others, key=distance.get)
    assert not np.array_equal(got, ranked.numpy())  # here the logit order differs


def test_the_fast_suite_aims_at_malts_targets_and_keeps_square_as_the_masking_check(registry):
    ran, members = plan(registry, "fast", num_classes=4, randomized=False)
    assert [m.ran for m in members] == ["apgd-ce", "apgd-t-malt", "square-1k"]
    assert members[1].params["target_order"] == "linear" and members[1].params["target_classes"] == 3
    assert members[2].black_box and members[2].params["queries"] == 1000
    _, three = plan(registry, "fast", num_classes=3, randomized=False)
    assert three[1].ran == "apgd-dlr" and "needs 4 classes" in three[1].note
