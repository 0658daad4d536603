"""Hidden-layer activations of a classifier's Keras model, for detectors.

Detectors in the literature read the network's inner representation: the last hidden layer
(kernel density), a few layers (Mahalanobis, LID). `feature_layers(clf)` lists the layers worth
reading, in order, ending with the penultimate one; `extract` streams a data set through them.
"""

from __future__ import annotations

import numpy as np

from .batch_relaxed import batch_relaxed_function
from .classifier import Classifier, batches
from .errors import ModelError

# Layers whose output is a new representation (not a reshape, a dropout or the input).
_SKIP = ("InputLayer", "Flatten", "Dropout", "Reshape", "Activation", "Softmax", "GaussianNoise",
         "SpatialDropout1D", "SpatialDropout2D", "Rescaling", "Normalization")


def feature_layers(clf: Classifier) -> list[str]:
    """Names of the hidden layers that carry a representation, input side first. The output
    layer (the logits, or the softmax and its input) is not included."""
    model = clf.model
    layers = [layer for layer in model.layers if type(layer).__name__ not in _SKIP]
    if len(layers) < 2:
        raise ModelError(f"{clf.name}: the model has no hidden layer for a detector to read")
    return [layer.name for layer in layers[:-1]]  # the last one computes the logits


def penultimate_layer(clf: Classifier) -> str:
    """The last hidden layer: the representation the logits are computed from."""
    return feature_layers(clf)[-1]


def feature_function(clf: Classifier, layers: list[str], pool: bool = True):
    """A differentiable fn(x) -> list of tensors (B, D), one per layer.

    pool=True averages feature maps over space (B, H, W, C) -> (B, C), as Lee et al. do;
    pool=False flattens them."""
    import keras
    from keras import ops

    model = clf.model
    try:
        outputs = [model.get_layer(name).output for name in layers]
    except ValueError as exc:
        raise ModelError(f"{clf.name}: {exc}; layers available: {feature_layers(clf)}") from None
    if isinstance(model, keras.Sequential):
        inner = _sequential_prefix(model, layers)
    else:
        inner = keras.Model(model.inputs[0], outputs)

    def features(x, training: bool = False):
        maps = inner(clf.to_model_input(x), training=training)
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        out = []
        for m in maps:
            if len(m.shape) > 2:
                m = ops.mean(m, axis=tuple(range(1, len(m.shape) - 1))) if pool else ops.reshape(
                    m, (ops.shape(m)[0], -1))
            out.append(ops.cast(m, "float32"))
        return out

    return features


def _sequential_prefix(model, layers: list[str]):
    """fn(x, training) -> the outputs of `layers`, running a Sequential model's layers in turn up
    to the last one asked for. Why not keras.Model(inputs, [several layer outputs]): on the
    demo CNN that multi-output model ran 3-4x slower than this loop (measured in graph mode)."""
    wanted = set(layers)
    last = max(i for i, layer in enumerate(model.layers) if layer.name in wanted)

    def run(x, training=False):
        h, found = x, {}
        for layer in model.layers[: last + 1]:
            h = layer(h, training=training)
            if layer.name in wanted:
                found[layer.name] = h
        return [found[name] for name in layers]

    return run


def extract(clf: Classifier, x: np.ndarray, layers: list[str], *, pool: bool = True,
            batch_size: int = 256) -> list[np.ndarray]:
    """Activations of `x` at `layers`, computed batch by batch: one (N, D) array per layer."""
    import tensorflow as tf

    fn = batch_relaxed_function(feature_function(clf, layers, pool))
    parts: list[list[np.ndarray]] = [[] for _ in layers]
    for xb in batches(x, batch_size):
        for i, f in enumerate(fn(tf.constant(xb))):
            parts[i].append(np.asarray(f))
    return [np.concatenate(p) for p in parts]
