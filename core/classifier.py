"""Classifier: a Keras model seen as `logits(x)` over images in a declared input range.

Attacks need logits, not probabilities: a softmax saturates in float32 and its gradient
vanishes. When a model ends in a softmax, the logits are recovered from the layer before it
(sharing the model's live weights) and `logits_source` says so.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError, ModelError

log = logging.getLogger("egide")

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


class Classifier:
    """An image classifier: float32 NHWC images in `clip` range -> one logit per class."""

    def __init__(self, model, *, clip=(0.0, 1.0), name: str | None = None):
        import keras

        if not isinstance(model, keras.Model):
            raise ModelError(f"expected a keras.Model, got {type(model).__name__}")
        lo, hi = (float(v) for v in clip)
        if not hi > lo:
            raise ModelError(f"clip must be (low, high) with low < high, got {clip}")
        self.model = model
        self.clip = (lo, hi)
        self.name = name or model.name
        self._check_shapes()
        self._logits_fn, self.logits_source = _logits_function(model)
        if self.logits_source != "model output":
            log.info("%s: %s", self.name, self.logits_source)

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_keras(cls, model, clip=(0.0, 1.0), name: str | None = None) -> "Classifier":
        return cls(model, clip=clip, name=name)

    @classmethod
    def load(cls, path: str | os.PathLike, clip=(0.0, 1.0)) -> "Classifier":
        """Load a named model (a model plugin, e.g. "brain-tumor-cnn") or a `.keras`/`.h5`
        file, with Keras' safe mode (no arbitrary code runs)."""
        if isinstance(path, str) and not Path(path).suffix:
            from .registry import registry

            reg = registry()
            if path in reg.names("model"):
                return reg.create("model", path).load()
            if not Path(path).exists():
                known = ", ".join(reg.names("model")) or "none installed"
                raise ModelError(f"no model named '{path}' (named models: {known}) and no such file")
        path = Path(path)
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise ModelError(
                f"{path}: unsupported model format '{path.suffix}'; save the model with "
                "model.save('model.keras') (or .h5)"
            )
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        import keras

        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for an unreadable file
            raise ModelError(f"{path}: could not load the model: {exc}") from None
        return cls(model, clip=clip, name=path.stem)

    # ---- what it is --------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.model.input_shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.model.output_shape[-1])

    def batch_size_for(self, images: int, budget_mb: float = 512.0) -> int:
        """A batch size for attacks on `images` images: as many as the model's activations (kept
        for the backward pass) fit in `budget_mb`, at most all of them. Fewer, larger batches
        cost less per image on small models; the budget keeps memory flat on large ones."""
        per_image = 0
        for layer in getattr(self.model, "layers", []):
            try:
                shape = layer.output.shape
                per_image += int(np.prod([d for d in shape[1:] if d is not None]))
            except (AttributeError, ValueError, TypeError):
                continue
        per_image = max(per_image, 4 * int(np.prod(self.input_shape)))  # unknown layers: a floor
        fits = int(budget_mb * 2**20 / (per_image * 4 * 3))  # float32; forward, backward, copies
        return max(1, min(images, max(fits, 16)))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "clip": list(self.clip),
            "logits": self.logits_source,
        }

    def _check_shapes(self) -> None:
        inputs = getattr(self.model, "inputs", None)
        if not inputs or len(inputs) != 1:
            raise ModelError(
                f"{self.name}: the model must be built with exactly one image input "
                "(add keras.Input(shape=(H, W, C)) as its first layer)"
            )
        shape = self.model.input_shape
        if len(shape) != 4 or any(d is None for d in shape[1:]):
            raise ModelError(
                f"{self.name}: expected an image input of shape (batch, H, W, C), got {shape}"
            )
        out = self.model.output_shape
        if not isinstance(out, tuple) or len(out) != 2 or (out[-1] or 0) < 2:
            raise ModelError(
                f"{self.name}: expected one output per class, shape (batch, classes>=2), got {out}"
            )

    # ---- inputs ------------------------------------------------------------------------
    def check_inputs(self, x, what: str = "images") -> np.ndarray:
        """Return `x` as float32 NHWC after checking shape, dtype, values and range."""
        x = np.asarray(x)
        if x.dtype.kind in "iub":
            raise InputError(
                f"{what} have integer dtype {x.dtype}; convert them to float32 in the "
                f"classifier's range {self.clip} (for 8-bit images in [0, 1]: x / 255)"
            )
        if x.dtype.kind != "f":
            raise InputError(f"{what} must be a float array, got dtype {x.dtype}")
        if x.ndim == 3 and self.input_shape[-1] == 1 and x.shape[1:] == self.input_shape[:2]:
            x = x[..., None]  # a stack of grayscale images without the channel axis
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"{what} have shape {tuple(x.shape)} but the model expects "
                f"(N, {', '.join(map(str, self.input_shape))})"
            )
        if x.shape[0] == 0:
            raise InputError(f"no {what} given: the batch is empty")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            bad = int((~np.isfinite(x)).reshape(len(x), -1).any(axis=1).sum())
            raise InputError(f"{what} contain NaN or Inf values ({bad} image(s)); clean them first")
        lo, hi = self.clip
        tol = 1e-5 * (hi - lo)
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - tol or xmax > hi + tol:
            raise InputError(
                f"{what} have values in [{xmin:.4g}, {xmax:.4g}] but the classifier's range is "
                f"[{lo:g}, {hi:g}]; rescale the data or declare the range with clip=(low, high)"
            )
        return x

    def check_labels(self, y, n: int, what: str = "labels") -> np.ndarray:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == self.num_classes:
            y = y.argmax(axis=1)  # one-hot labels
        if y.ndim != 1 or len(y) != n:
            raise InputError(f"{what} must be {n} class indices, got shape {tuple(y.shape)}")
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise InputError(f"{what} must be integer class indices")
        elif y.dtype.kind not in "iu":
            raise InputError(f"{what} must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
        if n and (y.min() < 0 or y.max() >= self.num_classes):
            raise InputError(
                f"{what} must lie in 0..{self.num_classes - 1} (the model has "
                f"{self.num_classes} classes); got values in {int(y.min())}..{int(y.max())}"
            )
        return y

    # ---- outputs -----------------------------------------------------------------------
    def logits(self, x):
        """Logits as a tensor; differentiable, and safe to call inside a tf.function."""
        return self._logits_fn(x)

    def probabilities(self, x):
        import tensorflow as tf

        return tf.nn.softmax(self.logits(x))

    def predict_logits(self, x, batch_size: int | None = 256) -> np.ndarray:
        x = self.check_inputs(x)
        return np.concatenate([self._logits_np(b) for b in batches(x, batch_size or 256)])

    def predict(self, x, batch_size: int | None = 256) -> np.ndarray:
        """Predicted class indices, computed batch by batch."""
        return self.predict_logits(x, batch_size).argmax(axis=1)

    def _logits_np(self, xb: np.ndarray) -> np.ndarray:
        return np.asarray(self._compiled_logits(xb))

    @property
    def _compiled_logits(self):
        fn = self.__dict__.get("_compiled")
        if fn is None:
            import tensorflow as tf

            fn = tf.function(self.logits, reduce_retracing=True)
            self.__dict__["_compiled"] = fn
        return fn

    def __repr__(self) -> str:
        return (
            f"<Classifier {self.name}: input {self.input_shape}, {self.num_classes} classes, "
            f"range {self.clip}, logits from {self.logits_source}>"
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits (NumPy, numerically stable), one row per image."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def batches(x: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size]


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def _logits_function(model):
    """Return (fn, source): fn(x) gives logits; source says where they come from."""
    import keras
    from keras import ops

    last = model.layers[-1] if model.layers else None
    softmax_layer = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and _activation_name(last) == "softmax"
    )
    if softmax_layer:
        features = keras.Model(model.inputs[0], last.input)
        return (
            lambda x: features(x, training=False),
            f"recovered: the input of the final {type(last).__name__} layer",
        )
    if isinstance(last, keras.layers.Dense) and _activation_name(last) == "softmax":
        features = keras.Model(model.inputs[0], last.input)

        def dense_logits(x):
            z = ops.matmul(features(x, training=False), last.kernel)
            return z + last.bias if last.use_bias else z

        return dense_logits, f"recovered: the pre-softmax output of Dense layer '{last.name}'"
    if _activation_name(last) in ("softmax", "sigmoid"):
        # A softmax we cannot undo structurally: log-probabilities differ from the logits
        # by a per-sample constant, so margins and argmax are exact; only saturation remains.
        return (
            lambda x: ops.log(ops.maximum(model(x, training=False), 1e-30)),
            f"approximated: log of the '{last.name}' probabilities (layer not recognised)",
        )
    return (lambda x: model(x, training=False)), "model output"
