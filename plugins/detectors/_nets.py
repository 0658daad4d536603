"""Small Keras networks inside detectors: seeded training, weights as arrays, compiled scoring.

MagNet's autoencoder and the learned detector both train a small network at fit time. They
share this: a seeded Adam loop (numpy shuffling and explicit initialiser seeds, so a fit
reproduces without touching Keras' global random state), saving the weights as plain arrays
for `Detector.save`, and running a compiled function over a data set batch by batch (the
functions themselves are compiled and cached per classifier by `Plugin.compiled`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from egide.core.batch_relaxed import batch_relaxed_function


def initializer(seed: int):
    """Glorot-uniform with a fixed seed: the same weights at every build."""
    import keras

    return keras.initializers.GlorotUniform(seed=seed)


def train(model, loss: Callable, batch_fn: Callable, n: int, *, steps: int, batch_size: int,
          learning_rate: float, seed: int) -> None:
    """`steps` Adam updates on `loss(targets, outputs)`, over minibatches of `n` examples
    reshuffled at every pass; `batch_fn(indices, rng)` returns (inputs, targets).

    The shuffling and any augmentation draw from one numpy generator seeded with `seed`."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(learning_rate)
    variables = model.trainable_variables

    @partial(batch_relaxed_function, autograph=False)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            value = loss(yb, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))

    rng = np.random.default_rng(seed)
    done = 0
    while done < steps:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            xb, yb = batch_fn(order[start:start + batch_size], rng)
            step(tf.constant(xb), tf.constant(yb))
            done += 1
            if done == steps:
                break


def epochs_to_steps(epochs: int, n: int, batch_size: int) -> int:
    """Adam updates in `epochs` passes over n examples."""
    return epochs * -(-n // batch_size)


def weights_state(model, prefix: str) -> dict[str, np.ndarray]:
    """The model's weights as `{prefix/0: array, prefix/1: ...}` for `Detector._state()`."""
    return {f"{prefix}/{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}


def load_weights(model, state: dict[str, np.ndarray], prefix: str) -> None:
    """Put weights saved by `weights_state` back into a freshly built `model`."""
    count = len(model.get_weights())
    try:
        model.set_weights([state[f"{prefix}/{i}"] for i in range(count)])
    except (KeyError, ValueError) as exc:
        from egide.core import InputError

        raise InputError(f"the saved {prefix} weights do not fit the network its params "
                         f"build ({exc}); the file is damaged or from another version") from None


def run_batches(fn, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """fn over `x` batch by batch (one compiled call each), concatenated as numpy."""
    import tensorflow as tf

    return np.concatenate([np.asarray(fn(tf.constant(x[i:i + batch_size])))
                           for i in range(0, len(x), batch_size)])
