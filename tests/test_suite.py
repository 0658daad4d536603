"""The reference suite: per-point worst case over its members, never kinder than one of them,
variants for few classes, the rand protocol for randomized models, and the masking flag when the
black-box member breaks what the gradient attacks missed."""

import dataclasses

import keras
import pytest

import egide
from egide.lab.evaluation import suite as suite_module
from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, evaluate

EPS = 0.1


def small(protocol_members):
    """The same protocol with fewer iterations and queries, so a test runs in seconds."""
    cheaper = {"steps": 20, "queries": 400}
    return [dataclasses.replace(m, params={k: cheaper.get(k, v) for k, v in m.params.items()})
            for m in protocol_members]


@pytest.fixture
def fast_protocols(monkeypatch):
    for name, members in list(suite_module.PROTOCOLS.items()):
        monkeypatch.setitem(suite_module.PROTOCOLS, name, small(members))


@pytest.fixture(scope="module")
def data(bars):
    _, _, x_test, y_test = bars
    return egide.Dataset(x_test[:60], y_test[:60], ("horizontal", "vertical", "diagonal"))


def run(clf, data, suite, eps=EPS, **settings):
    config = EvaluationConfig(model="m", data="d", attacks=[AttackSpec(plugin="fgsm")], eps=[eps],
                              suite=suite, gallery=0, sanity_checks=False, **settings)
    return evaluate(config, classifier=clf, dataset=data)


def test_the_suite_is_a_per_point_worst_case_never_kinder_than_a_member(fast_protocols, registry, clf, data):
    report = run(clf, data, "quick")
    (r,) = report.suite.runs
    assert r.after == sorted(r.after, reverse=True) and r.robust_accuracy == r.after[-1]
    assert r.robust_accuracy == pytest.approx(r.robust.mean())
    assert set(r.broken_by[~r.robust & (clf.predict(data.x) == data.y)]) <= {"apgd-ce", "apgd-dlr"}
    alone = registry.create("attack", "apgd", eps=EPS, steps=20).run(clf, data.x, data.y)
    assert r.robust_accuracy <= alone.robust_accuracy + 1 / len(data)
    # The headline (worst case) takes the suite into account, and never exceeds it.
    assert report.worst_case[f"{EPS:.6g}"] <= r.robust_accuracy


def test_few_classes_get_the_variants_that_apply_and_the_report_says_so(fast_protocols, clf, data):
    report = run(clf, data, "standard")  # the bars task has 3 classes
    members = {m.label: m for m in report.suite.members}
    assert members["apgd-t"].ran == "apgd-dlr" and "needs 4 classes" in members["apgd-t"].note
    assert members["fab-t"].ran == "fab-t" and members["square"].ran == "square"


def test_a_member_whose_attack_is_not_installed_is_named_not_hidden():
    from egide.core.registry import Registry

    without_fab = Registry.load(disabled=["fab"])
    ran, members = suite_module.plan(without_fab, "standard", 10, randomized=False)
    fab_t = next(m for m in members if m.label == "fab-t")
    assert fab_t.ran is None and "'fab' attack is not installed" in fab_t.note
    assert [m.ran for m in members if m.label != "fab-t"] == ["apgd-ce", "apgd-t", "square"]


class _Quantise(keras.layers.Layer):
    """Rounds inputs to black and white: piecewise constant, so its gradient is zero."""

    def call(self, x):
        return keras.ops.round(x)


def test_square_breaking_what_apgd_missed_is_flagged(fast_protocols, cnn_model, data):
    masked = egide.Classifier.from_keras(
        keras.Sequential([keras.Input((8, 8, 1)), _Quantise(), *cnn_model.layers]))
    report = run(masked, data, "standard", eps=0.4)  # enough to push pixels across 0.5
    (r,) = report.suite.runs
    square_at = [m.label for m in report.suite.members].index("square")
    assert r.after[square_at] < r.after[square_at - 1], "Square should break what APGD could not"
    assert r.masking and "gradient masking" in r.masking
    check = next(c for c in report.sanity if c.name == "black-box-not-stronger-than-white-box")
    assert not check.passed


def test_a_randomized_model_gets_the_rand_protocol(fast_protocols, registry, clf, data):
    noisy = registry.create("defense", "gaussian-noise", sigma=0.05).apply(clf)
    assert suite_module.is_randomized(noisy, data.x, 64)
    assert not suite_module.is_randomized(clf, data.x, 64)
    ran, members = suite_module.plan(registry, "standard", 3, randomized=True)
    assert ran == "rand" and all(m.params.get("eot_samples") == 20 for m in members if m.ran)


def test_an_unknown_suite_is_refused_naming_the_choices():
    with pytest.raises(Exception, match="standard"):
        EvaluationConfig(model="m", data="d", suite="strongest")
