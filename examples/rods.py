"""A tiny synthetic volume task — rods in noise — and a small Conv3D network for it.

The 3-D sibling of `bars`: 10x10x10 one-channel volumes in [0, 1] holding a bright rod along the
depth, height or width axis at a random place, on noise. The tests attack, defend and guard it
as volumes.
"""

from __future__ import annotations

import numpy as np

SIZE = 10
SHAPE = (SIZE, SIZE, SIZE, 1)
CLASSES = ("along-depth", "along-height", "along-width")


def make_rods(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    x = rng.uniform(0.0, 0.3, (n, SIZE, SIZE, SIZE)).astype(np.float32)
    a, b = rng.integers(2, SIZE - 2, (2, n))
    for i in range(n):
        where = [slice(None)] * 3
        others = [axis for axis in range(3) if axis != y[i]]
        where[others[0]], where[others[1]] = a[i], b[i]
        x[i][tuple(where)] += 0.6
    return np.clip(x, 0.0, 1.0)[..., None], y.astype(np.int64)


def train_conv3d(x: np.ndarray, y: np.ndarray, epochs: int = 6, seed: int = 7):
    """A small Sequential Conv3D network with a logits output."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv3D(8, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling3D(),
            keras.layers.Conv3D(16, 3, activation="relu", padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(len(CLASSES)),
        ],
        name="rods_conv3d",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model
