"""Shared fixtures: a small synthetic image task and small real CNNs trained once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import egide

SHAPE = (8, 8, 1)
CLASSES = ("horizontal", "vertical", "diagonal")


def make_bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 grayscale images of a horizontal, vertical or diagonal bar on noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.uniform(0.0, 0.3, (n, 8, 8)).astype(np.float32)
    pos = rng.integers(1, 7, n)
    for i in range(n):
        if y[i] == 0:
            x[i, pos[i], :] += 0.6
        elif y[i] == 1:
            x[i, :, pos[i]] += 0.6
        else:
            idx = np.arange(8)
            x[i, idx, (idx + pos[i] - 3) % 8] += 0.6
    return np.clip(x, 0.0, 1.0)[..., None], y.astype(np.int64)


@pytest.fixture(scope="session")
def bars():
    """(x_train, y_train, x_test, y_test) of the bars task."""
    x_train, y_train = make_bars(1200, seed=1)
    x_test, y_test = make_bars(200, seed=2)
    return x_train, y_train, x_test, y_test


def _train_cnn(x, y, softmax: bool):
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(len(CLASSES), activation="softmax" if softmax else None),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def cnn_model(bars):
    """A small CNN with a logits output, trained on the bars task (test accuracy ~100%)."""
    x_train, y_train, _, _ = bars
    return _train_cnn(x_train, y_train, softmax=False)


@pytest.fixture(scope="session")
def softmax_model(cnn_model):
    """The same network and weights as `cnn_model`, ending in a softmax."""
    import keras

    model = keras.Sequential(
        [keras.Input(SHAPE)]
        + [keras.layers.deserialize(keras.layers.serialize(layer)) for layer in cnn_model.layers[:-1]]
        + [keras.layers.Dense(len(CLASSES), activation="softmax")]
    )
    model.set_weights(cnn_model.get_weights())
    return model


@pytest.fixture(scope="session")
def clf(cnn_model):
    return egide.Classifier.from_keras(cnn_model, clip=(0.0, 1.0))


@pytest.fixture(scope="session")
def softmax_clf(softmax_model):
    return egide.Classifier.from_keras(softmax_model, clip=(0.0, 1.0))


@pytest.fixture(scope="session")
def test_batch(bars, clf):
    """64 test images that the CNN classifies correctly, with their labels."""
    _, _, x_test, y_test = bars
    keep = clf.predict(x_test) == y_test
    return x_test[keep][:64], y_test[keep][:64]


@pytest.fixture(scope="session")
def registry():
    return egide.registry()
