"""A model with one sigmoid output (tumour / no tumour, the commonest medical set-up) is a
two-class classifier with logits [0, z]: attacks, a defense, a detector, the suite and the report
all work on it, with the same answers as the equivalent two-logit model."""

import keras
import numpy as np
import pytest

import egide
from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, evaluate

from examples.bars import SHAPE


@pytest.fixture(scope="module")
def binary_task(bars):
    """Horizontal bars (0) against vertical ones (1)."""
    x_train, y_train, x_test, y_test = bars
    train, test = y_train < 2, y_test < 2
    return x_train[train], y_train[train], x_test[test], y_test[test]


@pytest.fixture(scope="module")
def sigmoid_model(binary_task):
    x, y, _, _ = binary_task
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.1), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x, y.astype("float32"), epochs=6, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def binary(sigmoid_model):
    return egide.Classifier.from_keras(sigmoid_model)


def test_one_sigmoid_output_is_two_classes_with_logits_0_and_z(binary, sigmoid_model, binary_task):
    _, _, x, y = binary_task
    assert binary.num_classes == 2 and "logits [0, z]" in binary.logits_source
    logits = binary.predict_logits(x)
    assert np.all(logits[:, 0] == 0)
    p = sigmoid_model.predict(x, verbose=0)[:, 0]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 1])), p, atol=1e-5)
    assert np.array_equal(binary.predict(x), (p > 0.5).astype(int))
    assert np.mean(binary.predict(x) == y) > 0.95
    # One logit without a sigmoid is the same two-class classifier.
    plain = keras.Sequential([keras.Input(SHAPE), *sigmoid_model.layers[:-1], keras.layers.Dense(1)])
    plain.layers[-1].set_weights(sigmoid_model.layers[-1].get_weights())
    np.testing.assert_allclose(egide.Classifier.from_keras(plain).predict_logits(x), logits, atol=1e-5)


@pytest.mark.parametrize("name, params", [("pgd", {"eps": 0.2}), ("apgd", {"eps": 0.2, "steps": 20}),
                                          ("deepfool", {}), ("square", {"eps": 0.2, "queries": 200})])
def test_attacks_break_a_sigmoid_model_within_their_budget(binary, binary_task, registry, name, params):
    _, _, x, y = binary_task
    result = registry.create("attack", name, **params).run(binary, x[:40], y[:40], seed=0)
    assert result.robust_accuracy < result.clean_accuracy
    if "eps" in params:
        assert result.linf.max() <= params["eps"] + 1e-6


def test_a_defense_and_a_detector_work_on_a_sigmoid_model(binary, binary_task, registry):
    x_train, y_train, x, y = binary_task
    defended = registry.create("defense", "bit-depth", bits=4).apply(binary)
    assert np.mean(defended.predict(x) == y) > 0.9
    detector = registry.create("detector", "kernel-density").fit(binary, x_train[:200])
    adv = registry.create("attack", "pgd", eps=0.3).run(binary, x[:40], y[:40]).x_adv
    assert detector.score(binary, adv).mean() > detector.score(binary, x[:40]).mean()


def test_the_evaluation_and_its_suite_run_on_a_sigmoid_model(binary, binary_task):
    _, _, x, y = binary_task
    data = egide.Dataset(x[:40], y[:40], ("horizontal", "vertical"))
    config = EvaluationConfig(model="m", data="d", attacks=[AttackSpec(plugin="pgd", params={"steps": 10})],
                              eps=[0.2], suite="quick", gallery=2, sanity_checks=False)
    report = evaluate(config, classifier=binary, dataset=data)
    members = {m.label: m for m in report.suite.members}
    assert members["apgd-t"].ran is None and "needs" in members["apgd-t"].note  # 2 classes: no DLR
    assert list(report.worst_case.values())[0] < report.clean_accuracy
