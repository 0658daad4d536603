"""Input ranges: a model that wants 0..255 pixels is read as such, fed correctly, and gets the
same numbers as the same network with its rescaling moved outside; a declared range wins;
images in the wrong scale are a clear error, never a silently wrong report."""

import keras
import numpy as np
import pytest

import egide
from egide.core.errors import InputError, ModelError
from egide.core.input_range import detect_input_range

from examples.bars import SHAPE


def with_first(layer, cnn_model):
    """cnn_model's network and weights, behind `layer`."""
    copy = keras.Sequential([keras.Input(SHAPE), layer]
                            + [keras.layers.deserialize(keras.layers.serialize(lay)) for lay in cnn_model.layers])
    copy.set_weights(cnn_model.get_weights())
    return copy


@pytest.fixture(scope="module")
def model_255(cnn_model):
    """The bars CNN as a Keras tutorial would build it: Rescaling(1/255) first, wants 0..255."""
    return with_first(keras.layers.Rescaling(1 / 255), cnn_model)


@pytest.mark.parametrize("layer, expected, how", [
    (keras.layers.Rescaling(1 / 255), (0.0, 255.0), "Rescaling"),
    (keras.layers.Rescaling(1 / 127.5, offset=-1), (0.0, 255.0), "Rescaling"),
    (keras.layers.Normalization(mean=120.0, variance=60.0**2), (0.0, 255.0), "Normalization"),
    (keras.layers.Normalization(mean=0.45, variance=0.22**2), (0.0, 1.0), "Normalization"),
])
def test_the_range_is_read_from_the_models_first_scaling_layer(cnn_model, layer, expected, how):
    clf = egide.Classifier.from_keras(with_first(layer, cnn_model))
    assert clf.input_range == expected
    assert clf.range_source.startswith("detected") and how in clf.range_source
    assert clf.describe()["input_range"] == list(expected)


def test_a_model_that_says_nothing_is_assumed_unit_range_and_a_declared_range_wins(cnn_model, model_255):
    plain = egide.Classifier.from_keras(cnn_model)
    assert plain.input_range == (0.0, 1.0) and plain.range_source.startswith("assumed")
    declared = egide.Classifier.from_keras(model_255, input_range=(0, 1))
    assert declared.input_range == (0.0, 1.0) and declared.range_source == "declared"
    nested = keras.Sequential([keras.Input(SHAPE), keras.Sequential([keras.layers.RandomFlip()]),
                               keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(3)])
    assert detect_input_range(nested)[0] == (0.0, 255.0)  # augmentation layers are looked through


def test_a_0_255_model_gets_the_numbers_of_the_same_network_with_its_rescaling_outside(
        cnn_model, model_255, bars, registry):
    _, _, x, y = bars
    outside = egide.Classifier.from_keras(cnn_model)
    inside = egide.Classifier.from_keras(model_255)  # detected: 0..255
    np.testing.assert_allclose(inside.predict_logits(x), outside.predict_logits(x), rtol=1e-4, atol=1e-4)
    assert np.mean(inside.predict(x) == y) > 0.9  # not near-black images: the real accuracy
    pgd = registry.create("attack", "pgd", eps=4 / 255 * 20, steps=10)
    a, b = pgd.run(inside, x[:80], y[:80], seed=3), pgd.run(outside, x[:80], y[:80], seed=3)
    assert abs(a.robust_accuracy - b.robust_accuracy) <= 1 / 80
    assert a.linf.max() <= 4 / 255 * 20 + 1e-6  # the budget is a share of the range: [0, 1] units


def test_images_in_the_models_own_scale_are_a_clear_error_saying_how_to_convert(model_255, bars):
    inside = egide.Classifier.from_keras(model_255)
    with pytest.raises(InputError, match=r"scaled to \[0, 1\] \(the model's own range 0\.\.255.*pass \(x - 0\) / 255"):
        inside.predict(bars[2][:4] * 255.0)


@pytest.mark.parametrize("bad", [(1, 1), (5, 0), (0, float("nan")), ("a", "b"), (1,)])
def test_a_bad_declared_range_is_refused(cnn_model, bad):
    with pytest.raises(ModelError, match="input range"):
        egide.Classifier.from_keras(cnn_model, input_range=bad)


def test_a_broken_set_up_stops_the_evaluation_naming_the_likely_causes(model_255, cnn_model, bars):
    from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, evaluate

    _, _, x, y = bars
    data = egide.Dataset(x[:60], y[:60], ("horizontal", "vertical", "diagonal"))
    config = dict(model="m", data="d", attacks=[AttackSpec(plugin="fgsm")], eps=[0.05], gallery=0)
    # A 0..255 model declared as 0..1: it sees near-black images.
    wrong_range = egide.Classifier.from_keras(model_255, input_range=(0, 1))
    with pytest.raises(InputError, match=r"(?s)no attack was run.*input range.*0\.\.1 \(declared\).*--allow-broken-setup"):
        evaluate(EvaluationConfig(**config), classifier=wrong_range, dataset=data)
    # Class folders in another order than the model's outputs.
    shifted = egide.Dataset(x[:60], (y[:60] + 1) % 3, ("horizontal", "vertical", "diagonal"))
    clf = egide.Classifier.from_keras(cnn_model)
    with pytest.raises(InputError, match=r"(?s)class order.*most 'horizontal' images are predicted as 'diagonal'"):
        evaluate(EvaluationConfig(**config), classifier=clf, dataset=shifted)
    # Overridden: the evaluation runs, and the report flags it first.
    report = evaluate(EvaluationConfig(**config, stop_on_broken_setup=False), classifier=clf, dataset=shifted)
    assert report.sanity[0].name == "clean-predictions-look-sane" and not report.sanity[0].passed
    # A sane set-up is not stopped.
    assert evaluate(EvaluationConfig(**config), classifier=clf, dataset=data).clean_accuracy > 0.9
