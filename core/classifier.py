"""Classifier: a Keras model seen as `logits(x)` over images scaled to [0, 1].

Images, budgets and attacks live in [0, 1] whatever pixel range the model expects; the model's
own range (`input_range`: declared, or read from a leading Rescaling/Normalization layer) is
applied inside `logits()`, x -> low + x (high - low). So a budget has one meaning for every
model: eps = 4/255 is 4/255 of the input range, 4 grey levels of an 8-bit scan, and moving a
model's rescaling out of it changes no number.

Attacks need logits, not probabilities: a softmax saturates in float32 and its gradient
vanishes. When a model ends in a softmax, the logits are recovered from the layer before it
(sharing the model's live weights) and `logits_source` says so. A model with one output (a
sigmoid, or one logit z) is a two-class classifier with logits [0, z].
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError, ModelError
from .input_range import UNIT, checked_range, detect_input_range
from .model_file import check_model_file

log = logging.getLogger("egide")

STOPPED = "egide: stopped on request"  # in the error of a computation through a stopped copy


class Classifier:
    """An image classifier: float32 NHWC images in [0, 1] -> one logit per class.

    input_range: the pixel range the Keras model expects, e.g. (0, 255); None reads it from the
    model (a leading Rescaling or Normalization layer) and assumes (0, 1) if the model says
    nothing. `clip` is the old name of the same argument."""

    clip = UNIT  # where images, budgets and attacks live, for every model
    source_file: str | None = None  # the file the model was loaded from (a card hashes it)
    conversion: dict | None = None  # a model converted from another format: how, and how it was checked
    _stop_flag = None  # a tf.Variable in copies made by stoppable()

    def __init__(self, model, *, input_range=None, clip=None, name: str | None = None):
        import keras

        if not isinstance(model, keras.Model):
            raise ModelError(f"expected a keras.Model, got {type(model).__name__}")
        self.model = model
        self.name = name or model.name
        declared = input_range if input_range is not None else clip
        if declared is not None:
            self.input_range = checked_range(declared)
            self.range_source = "declared"
        else:
            found, how = detect_input_range(model)
            self.input_range = found or UNIT
            self.range_source = how if found else f"assumed: {how}"
        self._check_shapes()
        self._logits_fn, self.logits_source = _logits_function(model)
        if self.logits_source != "model output":
            log.info("%s: %s", self.name, self.logits_source)

    # ---- construction ------------------------------------------------------------------
    @classmethod
    def from_keras(cls, model, input_range=None, name: str | None = None, *, clip=None) -> "Classifier":
        return cls(model, input_range=input_range, clip=clip, name=name)

    @classmethod
    def load(cls, path: str | os.PathLike, input_range=None, *, clip=None, normalize=None) -> "Classifier":
        """Load a named model (a model plugin, e.g. "brain-tumor-cnn"), a `.keras`/`.h5` file with
        Keras' safe mode (no arbitrary code runs), or a file an installed model format reads (ONNX).
        normalize: (means, stds) per channel, for formats whose models expect them (ONNX)."""
        if isinstance(path, str) and not Path(path).suffix:
            from .registry import registry

            reg = registry()
            if path in reg.names("model"):
                named = reg.create("model", path).load()
                declared = input_range if input_range is not None else clip
                if declared is None:
                    return named
                again = cls(named.model, input_range=declared, name=named.name)
                again.source_file = named.source_file
                return again
            if not Path(path).exists():
                known = ", ".join(reg.names("model")) or "none installed"
                raise ModelError(f"no model named '{path}' (named models: {known}) and no such file")
        path = Path(path)
        if reader := _model_format(path):
            return reader.load_file(path, input_range=input_range if input_range is not None else clip,
                                    normalize=normalize)
        if normalize is not None:
            raise InputError(f"{path}: normalize is for ONNX models; a Keras model carries its own normalisation")
        check_model_file(path)
        import keras

        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many types for an unreadable file
            raise ModelError(f"{path}: could not load the model: {exc}") from None
        loaded = cls(model, input_range=input_range, clip=clip, name=path.stem)
        loaded.source_file = str(path.resolve())
        return loaded

    # ---- what it is --------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """(H, W, C) for images, (D, H, W, C) for volumes."""
        return tuple(int(d) for d in self.model.input_shape[1:])

    @property
    def num_classes(self) -> int:
        return max(int(self.model.output_shape[-1]), 2)  # one output: two classes, [0, z]

    def to_model_input(self, x):
        """Images in [0, 1] -> the model's own pixel range (a tensor op; identity for [0, 1])."""
        lo, hi = self.input_range
        return x if (lo, hi) == UNIT else lo + x * (hi - lo)

    def activations_per_image(self) -> int:
        """Values the model's layers output for one image (what a forward pass holds)."""
        total = 0
        for layer in getattr(self.model, "layers", []):
            try:
                total += int(np.prod([d for d in layer.output.shape[1:] if d is not None]))
            except (AttributeError, ValueError, TypeError):
                continue  # a layer without a static output shape
        return total

    @property
    def output_is_logits(self) -> bool:
        """Whether the Keras model's own output is the logits (no softmax/sigmoid to undo)."""
        return self.logits_source.startswith("model output")

    def batch_size_for(self, images: int, budget_mb: float = 512.0) -> int:
        """A batch size for attacks on `images` images: as many as the model's activations (kept
        for the backward pass) fit in `budget_mb`, at most all of them. Fewer, larger batches
        cost less per image on small models; the budget keeps memory flat on large ones."""
        per_image = max(self.activations_per_image(), 4 * int(np.prod(self.input_shape)))  # a floor
        fits = int(budget_mb * 2**20 / (per_image * 4 * 3))  # float32; forward, backward, copies
        return max(1, min(images, max(fits, 16)))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "clip": list(self.clip),
            "input_range": list(self.input_range),
            "input_range_source": self.range_source,
            "logits": self.logits_source,
            "file": self.source_file,
            "conversion": self.conversion,
        }

    def _check_shapes(self) -> None:
        inputs = getattr(self.model, "inputs", None)
        if not inputs or len(inputs) != 1:
            raise ModelError(
                f"{self.name}: the model must be built with exactly one image input "
                "(add keras.Input(shape=(H, W, C)), or (D, H, W, C) for volumes, as its first layer)"
            )
        shape = self.model.input_shape
        if len(shape) not in (4, 5) or any(d is None for d in shape[1:]):
            raise ModelError(f"{self.name}: expected an image input of shape (batch, H, W, C) or a volume "
                             f"(batch, D, H, W, C), with every size fixed; got {shape}")
        out = self.model.output_shape
        if isinstance(out, list) or len(getattr(self.model, "outputs", [])) > 1:
            names = [_producer(t) for t in self.model.outputs]
            raise ModelError(
                f"{self.name}: the model has {len(names)} outputs ({', '.join(names)}); pick the "
                f"class scores with keras.Model(model.inputs, model.get_layer('{names[0]}').output)"
            )
        if not isinstance(out, tuple) or len(out) != 2 or not out[-1]:
            raise ModelError(
                f"{self.name}: expected class scores of shape (batch, classes) or one sigmoid "
                f"output (batch, 1), got {out}"
            )

    # ---- inputs ------------------------------------------------------------------------
    def check_inputs(self, x, what: str = "images") -> np.ndarray:
        """Return `x` as float32 NHWC after checking shape, dtype, values and range."""
        x = np.asarray(x)
        if x.dtype.kind in "iub":
            raise InputError(
                f"{what} have integer dtype {x.dtype}; convert them to float32 in [0, 1] "
                f"(8-bit images: x / 255; the model's own range {self._range_text()} is applied inside)"
            )
        if x.dtype.kind != "f":
            raise InputError(f"{what} must be a float array, got dtype {x.dtype}")
        if self.input_shape[-1] == 1 and x.shape[1:] == self.input_shape[:-1]:
            x = x[..., None]  # a stack of grayscale images (or volumes) without the channel axis
        if tuple(x.shape[1:]) != self.input_shape:
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
            m_lo, m_hi = self.input_range
            raise InputError(
                f"{what} have values in [{xmin:.4g}, {xmax:.4g}]; give images scaled to [0, 1] "
                f"(the model's own range {self._range_text()} is applied inside"
                + (f": pass (x - {m_lo:g}) / {m_hi - m_lo:g}" if (m_lo, m_hi) != UNIT else "")
                + ")"
            )
        return x

    def _range_text(self) -> str:
        lo, hi = self.input_range
        return f"{lo:g}..{hi:g}, {self.range_source}"

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
    def logits(self, x, training: bool = False):
        """Logits of images in [0, 1] as a tensor; differentiable, and safe to call inside a
        tf.function. training=True runs dropout and the like (for trainers)."""
        x = self.to_model_input(x)
        if self._stop_flag is not None:  # a stoppable copy: every model pass first checks it
            import tensorflow as tf

            check = tf.debugging.Assert(tf.logical_not(self._stop_flag), [STOPPED])
            with tf.control_dependencies([check]):
                x = tf.identity(x)
        return self._logits_fn(x, training)

    def stoppable(self):
        """(copy, stop): a copy of this classifier (same model, same live weights) and a function
        that stops it. After stop(), any computation through the copy fails at its next model
        pass, inside a compiled attack loop too, with a TensorFlow error that names STOPPED. A
        server cancels a long job this way within a batch. The copy traces its own graphs."""
        import copy

        import tensorflow as tf

        view = copy.copy(self)
        view.__dict__.pop("_compiled", None)
        view._stop_flag = flag = tf.Variable(False, trainable=False)
        return view, lambda: flag.assign(True)

    def reseed(self, seed: int, first_image: int = 0) -> None:
        """Restart the classifier's random draws (a randomized defense's); this one draws none.
        Attacks call it before every batch with the run's seed and the batch's first image, so
        image i draws from (seed, i), never from what ran before it."""

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
            from egide.core.batch_relaxed import batch_relaxed_function

            fn = batch_relaxed_function(self.logits)
            self.__dict__["_compiled"] = fn
        return fn

    def __repr__(self) -> str:
        return (
            f"<Classifier {self.name}: input {self.input_shape}, {self.num_classes} classes, "
            f"model range {self._range_text()}, logits from {self.logits_source}>"
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


def _producer(tensor) -> str:
    """The name of the layer that computes a Keras output tensor."""
    history = getattr(tensor, "_keras_history", None)
    return getattr(getattr(history, "operation", None), "name", None) or str(tensor.name)


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def _model_format(path: Path):
    """The installed model format that reads this file's suffix (an ONNX one), or None."""
    from .registry import registry

    suffix = path.suffix.lower()
    found = [cls for cls in registry().plugins("model-format") if suffix in cls.suffixes]
    return found[0]() if found else None


def _logits_function(model):
    """Return (fn, source): fn(x, training) gives logits; source says where they come from."""
    import keras
    from keras import ops

    last = model.layers[-1] if model.layers else None
    binary = int(model.output_shape[-1]) == 1
    squash = "sigmoid" if binary else "softmax"
    if binary:
        # One score z for the second class: logits [0, z] give softmax = [1 - sigmoid(z), sigmoid(z)].
        def two(z):
            z = ops.cast(z, "float32")
            return ops.concatenate([ops.zeros_like(z), z], axis=-1)
    else:
        def two(z):
            return z
    squash_layer = (isinstance(last, keras.layers.Softmax) and not binary) or (
        isinstance(last, keras.layers.Activation) and _activation_name(last) == squash
    )
    if squash_layer:
        features = keras.Model(model.inputs[0], last.input)
        return (
            lambda x, training=False: two(features(x, training=training)),
            f"recovered: the input of the final {type(last).__name__} layer"
            + (" (one sigmoid output: logits [0, z])" if binary else ""),
        )
    if isinstance(last, keras.layers.Dense) and _activation_name(last) == squash:
        features = keras.Model(model.inputs[0], last.input)

        def dense_logits(x, training=False):
            z = ops.matmul(features(x, training=training), last.kernel)
            return two(z + last.bias if last.use_bias else z)

        return dense_logits, (f"recovered: the pre-{squash} output of Dense layer '{last.name}'"
                              + (" (one sigmoid output: logits [0, z])" if binary else ""))
    if binary and _activation_name(last) == "sigmoid":
        def log_odds(x, training=False):
            p = ops.clip(model(x, training=training), 1e-7, 1 - 1e-7)
            return two(ops.log(p) - ops.log(1 - p))

        return log_odds, f"approximated: log-odds of the '{last.name}' sigmoid (layer not recognised)"
    if _activation_name(last) in ("softmax", "sigmoid") and not binary:
        # A softmax we cannot undo structurally: log-probabilities differ from the logits
        # by a per-sample constant, so margins and argmax are exact; only saturation remains.
        return (
            lambda x, training=False: ops.log(ops.maximum(model(x, training=training), 1e-30)),
            f"approximated: log of the '{last.name}' probabilities (layer not recognised)",
        )
    if binary:
        return (lambda x, training=False: two(model(x, training=training))), \
            "model output: one logit z, as logits [0, z]"
    return (lambda x, training=False: model(x, training=training)), "model output"
