"""A tiny synthetic image task — bars on noise — and a small CNN for it.

Used by the quick-start and the tests until the brain-MRI demo data set lands. 8x8 grayscale
images in [0, 1] of a horizontal, vertical or diagonal bar at a random position, on noise.
"""

from __future__ import annotations

import numpy as np

SHAPE = (8, 8, 1)
CLASSES = ("horizontal", "vertical", "diagonal")


def make_bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.uniform(0.0, 0.3, (n, 8, 8)).astype(np.float32)
    pos = rng.integers(1, 7, n)
    idx = np.arange(8)
    for i in range(n):
        if y[i] == 0:
            x[i, pos[i], :] += 0.6
        elif y[i] == 1:
            x[i, :, pos[i]] += 0.6
        else:
            x[i, idx, (idx + pos[i] - 3) % 8] += 0.6
    return np.clip(x, 0.0, 1.0)[..., None], y.astype(np.int64)


def train_cnn(x: np.ndarray, y: np.ndarray, softmax: bool = False, epochs: int = 8, seed: int = 7):
    """A small Sequential CNN; logits output unless `softmax`."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(len(CLASSES), activation="softmax" if softmax else None),
        ],
        name="bars_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model
