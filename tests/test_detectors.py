"""The unsupervised detectors `feature-squeezing`, `kernel-density` and `mahalanobis` on the bars
CNN: they separate PGD examples from clean ones, hold their false-positive rate, save and load
exactly, refuse another model and wrong shapes, and serve through `egide.Guard`. Plus the
helpers they stand on: `core/features.py` and `core/guard.py`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.ndimage import median_filter as scipy_median

import egide
from egide.core import InputError, ParameterError, load_detector
from egide.core.features import extract, feature_layers, penultimate_layer
from egide.plugins.squeezers import bit_depth, median

from detection import auc

DETECTORS = ["feature-squeezing", "kernel-density", "mahalanobis"]


@pytest.fixture(scope="module")
def x_fit(bars):
    """600 clean training images of the bars task: what the detectors are fitted on."""
    return bars[0][:600]


@pytest.fixture(scope="module")
def fitted(clf, registry, x_fit):
    return {name: registry.create("detector", name).fit(clf, x_fit) for name in DETECTORS}


@pytest.fixture(scope="module")
def other_clf(cnn_model):
    """The bars CNN's architecture with other weights: same shapes, a different model."""
    model = keras.models.clone_model(cnn_model)
    model.set_weights([w * 1.01 for w in cnn_model.get_weights()])
    return egide.Classifier.from_keras(model)


# ---- behaviour every one of them promises ------------------------------------------------
@pytest.mark.parametrize("name", DETECTORS)
def test_separates_pgd_examples_from_clean_images(name, fitted, clf, bars, test_adv):
    det = fitted[name]
    clean = bars[2][:200]
    assert auc(det.score(clf, clean), det.score(clf, test_adv)) > 0.8


@pytest.mark.parametrize("name", DETECTORS)
def test_threshold_gives_the_target_false_positive_rate_on_the_fit_data(name, registry, clf,
                                                                         x_fit):
    det = registry.create("detector", name, fpr=0.1).fit(clf, x_fit)
    rate = det.detect(clf, x_fit).mean()
    assert abs(rate - 0.1) <= 0.01


@pytest.mark.parametrize("name", DETECTORS)
def test_save_and_load_give_the_same_scores(name, fitted, clf, bars, tmp_path):
    det = fitted[name]
    x = bars[2][:50]
    loaded = load_detector(det.save(tmp_path / "det.npz"), clf)
    assert loaded.name == name and loaded.params == det.params
    assert loaded.threshold == det.threshold
    np.testing.assert_array_equal(loaded.score(clf, x), det.score(clf, x))


@pytest.mark.parametrize("name", DETECTORS)
def test_loading_for_another_model_is_refused(name, fitted, other_clf, tmp_path):
    path = fitted[name].save(tmp_path / "det.npz")
    with pytest.raises(InputError, match="fitted on another model"):
        load_detector(path, other_clf)


@pytest.mark.parametrize("name", DETECTORS)
def test_fitting_on_images_of_another_shape_is_a_clear_error(name, registry, clf):
    with pytest.raises(InputError, match=r"shape \(10, 16, 16, 1\).*expects \(N, 8, 8, 1\)"):
        registry.create("detector", name).fit(clf, np.zeros((10, 16, 16, 1), np.float32))


@pytest.mark.parametrize("name", DETECTORS)
def test_scoring_before_fitting_is_a_clear_error(name, registry, clf, bars):
    with pytest.raises(InputError, match="fit the detector"):
        registry.create("detector", name).score(clf, bars[2][:4])


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("fpr", [0.0, 1.0])
def test_false_positive_rate_outside_0_1_is_refused(name, fpr, registry):
    with pytest.raises(ParameterError, match="fpr"):
        registry.create("detector", name, fpr=fpr)


@pytest.mark.parametrize("name", DETECTORS)
def test_guard_predicts_and_flags_in_one_call(name, fitted, clf, bars, test_adv):
    x = np.concatenate([bars[2][:20], test_adv[:10]])
    out = egide.Guard(clf, fitted[name])(x)
    np.testing.assert_array_equal(out.labels, clf.predict(x))
    assert out.probabilities.shape == (30, 3)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out.scores, fitted[name].score(clf, x))
    np.testing.assert_array_equal(out.flagged, out.scores > fitted[name].threshold)
    assert out.flagged[20:].mean() > out.flagged[:20].mean()  # adversarial ones flagged more


# ---- feature squeezing ---------------------------------------------------------------------
@pytest.mark.parametrize("window", [2, 3, 4, 5])
def test_the_one_median_is_scipys_in_the_detector_and_the_defense(window, registry, clf):
    """One home for the squeezers (egide.plugins.squeezers), one convention: scipy's, which
    the feature-squeezing paper used; the median-filter defense answers the same."""
    x = np.random.default_rng(0).random((2, 9, 7, 2)).astype(np.float32)
    expected = scipy_median(x, size=(1, window, window, 1), mode="reflect")
    np.testing.assert_array_equal(median(tf.constant(x), window).numpy(), expected)
    gray = x[..., :1]
    defense = registry.create("defense", "median-filter", size=window)
    out = defense.transform(tf.constant(gray), None, (0.0, 1.0)).numpy()
    np.testing.assert_array_equal(out, scipy_median(gray, size=(1, window, window, 1), mode="reflect"))


def test_bit_depth_keeps_2_to_the_bits_levels_across_the_classifier_range():
    x = tf.constant(np.linspace(-1, 1, 1001, dtype=np.float32).reshape(1, 1001, 1, 1))
    levels = np.unique(bit_depth(x, 3, -1.0, 1.0).numpy())
    np.testing.assert_allclose(levels, np.linspace(-1, 1, 8), atol=1e-6)
    # Straight through: the same values, the identity's gradient (BPDA) instead of zero.
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        exact, bpda = bit_depth(x, 3, -1.0, 1.0), bit_depth(x, 3, -1.0, 1.0, straight_through=True)
    np.testing.assert_array_equal(exact.numpy(), bpda.numpy())
    assert tape.gradient(exact, x) is None or not np.any(tape.gradient(exact, x))
    np.testing.assert_allclose(tape.gradient(bpda, x).numpy(), 1.0, rtol=1e-5)  # the identity


def test_an_image_the_squeezers_leave_alone_scores_zero(registry, clf, x_fit):
    det = registry.create("detector", "feature-squeezing", bits=2).fit(clf, x_fit)
    flat = np.full((1, 8, 8, 1), 1 / 3, np.float32)  # a 2-bit level, unchanged by a median
    assert det.score(clf, flat)[0] == pytest.approx(0.0, abs=1e-6)


# ---- kernel density ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dropout_clf(cnn_model):
    """The bars CNN with a Dropout layer before its dense head (dropout has no weights)."""
    layers = [keras.layers.deserialize(keras.layers.serialize(layer)) for layer in cnn_model.layers]
    model = keras.Sequential([keras.Input((8, 8, 1))] + layers[:4] + [keras.layers.Dropout(0.3)]
                             + layers[4:])
    model.set_weights(cnn_model.get_weights())
    return egide.Classifier.from_keras(model)


def test_without_dropout_the_density_is_used_alone_and_said_so(fitted):
    det = fitted["kernel-density"]
    assert not det.uses_uncertainty
    assert "density alone" in det.uncertainty_note


def test_mc_dropout_uncertainty_is_used_and_does_not_depend_on_batching(registry, dropout_clf,
                                                                        x_fit, bars):
    det = registry.create("detector", "kernel-density", mc_passes=20).fit(dropout_clf, x_fit)
    assert det.uses_uncertainty and "20 passes" in det.uncertainty_note
    x = bars[2][:70]
    together = det.score(dropout_clf, x)
    one_by_one = np.concatenate([det.score(dropout_clf, x[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(one_by_one, together[:5], rtol=1e-4, atol=1e-4)
    raw = det._raw(dropout_clf, x)
    assert raw.shape == (70, 2) and np.all(raw[:, 1] >= -1e-6)  # U(x) is a variance: >= 0


def test_a_fit_image_is_scored_without_itself(registry, clf, x_fit, bars):
    """Leave-one-out: new clean images cross the threshold about as often as the fit images."""
    det = registry.create("detector", "kernel-density", fpr=0.1).fit(clf, x_fit)
    assert det.detect(clf, bars[2]).mean() < 0.2


# ---- mahalanobis ---------------------------------------------------------------------------
def test_logistic_combination_needs_adversarial_examples(registry, clf, x_fit):
    det = registry.create("detector", "mahalanobis", combine="logistic")
    with pytest.raises(InputError, match="x_adv"):
        det.fit(clf, x_fit)


def test_logistic_combination_learns_from_adversarial_examples(registry, clf, bars, test_adv):
    x_train, y_train = bars[0][:300], bars[1][:300]
    x_adv = registry.create("attack", "pgd", eps=0.1).run(clf, x_train, y_train).x_adv
    det = registry.create("detector", "mahalanobis", combine="logistic").fit(clf, x_train, x_adv)
    assert auc(det.score(clf, bars[2][:200]), det.score(clf, test_adv)) > 0.8


def test_an_unknown_layer_is_named_with_the_layers_available(registry, clf, x_fit):
    det = registry.create("detector", "mahalanobis", layers="dense,nope")
    with pytest.raises(InputError, match="'nope'.*available: .*dense"):
        det.fit(clf, x_fit)


def test_input_preprocessing_changes_the_scores(registry, clf, x_fit, bars):
    x = bars[2][:30]
    plain = registry.create("detector", "mahalanobis").fit(clf, x_fit)
    noisy = registry.create("detector", "mahalanobis", noise_magnitude=0.01).fit(clf, x_fit)
    raw_plain, raw_noisy = plain._layer_scores(clf, x), noisy._layer_scores(clf, x)
    assert np.all(np.isfinite(raw_noisy))
    # The step moves each input towards its closest class: distances shrink on average.
    assert raw_noisy.mean() < raw_plain.mean()


# ---- core/features.py ----------------------------------------------------------------------
def test_feature_layers_are_the_hidden_representations_in_order(clf):
    layers = feature_layers(clf)
    kinds = [type(clf.model.get_layer(n)).__name__ for n in layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "Dense"]  # no Flatten, no logits layer
    assert penultimate_layer(clf) == layers[-1]


def test_extract_pools_feature_maps_or_flattens_them(clf, bars):
    x = bars[0][:300]  # more than one batch of 128
    first = feature_layers(clf)[0]
    conv, dense = extract(clf, x, [first, penultimate_layer(clf)], batch_size=128)
    maps = keras.Model(clf.model.inputs[0], clf.model.get_layer(first).output)(x)
    np.testing.assert_allclose(conv, np.mean(maps, axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert dense.shape == (300, 32)
    [flat] = extract(clf, x[:5], [first], pool=False)
    assert flat.shape == (5, 8 * 8 * 16)


def test_functional_and_sequential_models_give_the_same_features(clf, cnn_model, bars):
    x = bars[2][:40]
    inputs = keras.Input((8, 8, 1))
    h = inputs
    for layer in cnn_model.layers:  # the same layers and weights, as a functional model
        h = keras.layers.deserialize(keras.layers.serialize(layer))(h)
    model = keras.Model(inputs, h)
    model.set_weights(cnn_model.get_weights())
    functional = egide.Classifier.from_keras(model)
    layers = feature_layers(clf)
    assert feature_layers(functional) == layers
    for a, b in zip(extract(clf, x, layers), extract(functional, x, layers)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_unknown_layer_is_a_model_error(clf, bars):
    with pytest.raises(egide.core.ModelError, match="layers available"):
        extract(clf, bars[2][:2], ["no_such_layer"])


# ---- core/guard.py -------------------------------------------------------------------------
def test_guard_refuses_an_unfitted_detector(registry, clf):
    with pytest.raises(InputError, match="fit the detector"):
        egide.Guard(clf, registry.create("detector", "feature-squeezing"))


def test_guard_rows_name_the_class(fitted, clf, bars):
    rows = egide.Guard(clf, fitted["feature-squeezing"])(bars[2][:3]).to_dict(
        ["horizontal", "vertical", "diagonal"])
    assert [set(r) for r in rows] == [{"label", "class", "confidence", "adversarial_score",
                                       "flagged"}] * 3
    assert all(r["class"] == ["horizontal", "vertical", "diagonal"][r["label"]] for r in rows)
