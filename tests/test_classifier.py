"""Classifier: loading, logits recovery from softmax, batched predictions, input checks."""

import keras
import numpy as np
import pytest

import egide
from egide.core import InputError, ModelError


def test_from_keras_exposes_shape_classes_range(clf):
    assert clf.input_shape == (8, 8, 1)
    assert clf.num_classes == 3
    assert clf.clip == (0.0, 1.0)
    assert clf.logits_source == "model output"


def test_softmax_model_logits_are_recovered_and_said_so(clf, softmax_clf, bars):
    x = bars[2][:32]
    assert "recovered" in softmax_clf.logits_source and "Dense" in softmax_clf.logits_source
    np.testing.assert_allclose(np.asarray(softmax_clf.logits(x)), np.asarray(clf.logits(x)), atol=1e-4)


def test_softmax_layer_at_the_end_is_recovered_too(cnn_model, clf, bars):
    model = keras.Sequential([cnn_model, keras.layers.Softmax()])
    wrapped = egide.Classifier.from_keras(model)
    assert "Softmax" in wrapped.logits_source
    x = bars[2][:16]
    np.testing.assert_allclose(np.asarray(wrapped.logits(x)), np.asarray(clf.logits(x)), atol=1e-4)


def test_recovered_logits_follow_the_live_weights(softmax_model, bars):
    model = keras.models.clone_model(softmax_model)
    model.set_weights(softmax_model.get_weights())
    wrapped = egide.Classifier.from_keras(model)
    x = bars[2][:4]
    before = np.asarray(wrapped.logits(x))
    model.layers[-1].bias.assign(model.layers[-1].bias + 5.0)
    np.testing.assert_allclose(np.asarray(wrapped.logits(x)), before + 5.0, atol=1e-4)


def test_predict_runs_in_batches_and_matches_logits(clf, bars):
    x = bars[2][:50]
    labels = clf.predict(x, batch_size=7)
    assert labels.shape == (50,)
    np.testing.assert_array_equal(labels, np.asarray(clf.logits(x)).argmax(1))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_load_saved_models(tmp_path, cnn_model, clf, bars, suffix):
    path = tmp_path / f"model{suffix}"
    cnn_model.save(path)
    loaded = egide.Classifier.load(path)
    x = bars[2][:8]
    np.testing.assert_allclose(np.asarray(loaded.logits(x)), np.asarray(clf.logits(x)), atol=1e-5)


def test_load_errors_say_what_to_fix(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        egide.Classifier.load(tmp_path / "missing.keras")
    with pytest.raises(ModelError, match="unsupported model format '.pt'"):
        egide.Classifier.load(tmp_path / "model.pt")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(ModelError, match=r"broken.keras is not a .keras archive \(a zip written by model.save\)"):
        egide.Classifier.load(broken)
    fake_h5 = tmp_path / "model.h5"
    fake_h5.write_text("hello")
    with pytest.raises(ModelError, match="is not an HDF5"):
        egide.Classifier.load(fake_h5)
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04 and nothing more")
    with pytest.raises(ModelError, match="could not load the model"):
        egide.Classifier.load(truncated)


def test_models_that_are_not_image_classifiers_are_refused():
    flat = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)])
    with pytest.raises(ModelError, match=r"\(batch, H, W, C\)"):
        egide.Classifier.from_keras(flat)
    maps = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ModelError, match="class scores of shape"):
        egide.Classifier.from_keras(maps)
    inp = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inp)
    two_heads = keras.Model(inp, [keras.layers.Dense(3, name="tumour")(flat), keras.layers.Dense(1, name="age")(flat)])
    with pytest.raises(ModelError, match=r"2 outputs \(tumour, age\).*get_layer\('tumour'\)"):
        egide.Classifier.from_keras(two_heads)
    single = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(ModelError, match="low < high"):
        egide.Classifier.from_keras(single, input_range=(1, 0))


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 8, 8, 1), np.uint8), "integer dtype uint8"),
        (np.zeros((2, 9, 9, 1), np.float32), r"shape \(2, 9, 9, 1\) but the model expects \(N, 8, 8, 1\)"),
        (np.zeros((0, 8, 8, 1), np.float32), "empty"),
        (np.full((2, 8, 8, 1), np.nan, np.float32), "NaN or Inf"),
        (np.full((2, 8, 8, 1), 255.0, np.float32), r"values in \[255, 255\]; give images scaled to \[0, 1\]"),
    ],
)
def test_bad_inputs_are_clear_errors(clf, x, message):
    with pytest.raises(InputError, match=message):
        clf.predict(x)


def test_grayscale_stack_without_channel_axis_is_accepted(clf, bars):
    x = bars[2][:5]
    np.testing.assert_array_equal(clf.predict(x[..., 0]), clf.predict(x))


def test_labels_are_checked(clf):
    with pytest.raises(InputError, match=r"0\.\.2"):
        clf.check_labels(np.array([0, 3]), 2)
    with pytest.raises(InputError, match="must be 2 class indices"):
        clf.check_labels(np.array([0, 1, 2]), 2)
    np.testing.assert_array_equal(clf.check_labels(np.eye(3)[[2, 0]], 2), [2, 0])


def test_a_stoppable_copy_stops_a_compiled_attack_mid_batch_and_leaves_the_original(clf, test_batch, registry):
    import threading

    import tensorflow as tf

    from egide.core.classifier import STOPPED

    x, y = test_batch
    view, stop = clf.stoppable()
    np.testing.assert_allclose(view.predict_logits(x), clf.predict_logits(x))  # same model, same weights
    long = registry.create("attack", "pgd", eps=0.1, steps=100_000, early_stop=False)
    started = threading.Event()
    threading.Thread(target=lambda: (started.wait(), stop()), daemon=True).start()
    with pytest.raises(tf.errors.InvalidArgumentError, match=STOPPED):
        long.run(view, x, y, batch_size=len(x), progress=lambda done, total: started.set())
    with pytest.raises(tf.errors.InvalidArgumentError, match=STOPPED):
        view.predict(x)  # stopped for good
    assert (clf.predict(x) == y).all()  # the shared original runs on
