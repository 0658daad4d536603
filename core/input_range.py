"""The pixel range a Keras model expects, read from the model where it says so.

Most Keras tutorials put the scaling inside the model: `Rescaling(1/255)` first means the model
wants 0..255 pixels; `Rescaling(1/127.5, offset=-1)` the same range mapped to [-1, 1]; a
`Normalization` layer with a stored mean and variance wants the pixels it was adapted on. Feeding
such a model images in [0, 1] gives it near-black scans and a silently wrong report, so the
Classifier asks here first, and falls back to [0, 1] only when the model says nothing.
"""

from __future__ import annotations

import numpy as np

from .errors import ModelError

UNIT = (0.0, 1.0)
# Layers that are inactive at inference (augmentation) or change nothing about the pixel scale.
_TRANSPARENT = ("InputLayer", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                "RandomContrast", "RandomBrightness", "RandomCrop", "Resizing", "CenterCrop",
                "GaussianNoise", "Dropout")


def checked_range(value, what: str = "input range") -> tuple[float, float]:
    """(low, high) as floats, low < high and both finite, or a ModelError that says so."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelError(f"{what} must be two numbers (low, high), such as (0, 255); got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or not hi > lo:
        raise ModelError(f"{what} must be (low, high) with low < high, got {value!r}")
    return lo, hi


def detect_input_range(model) -> tuple[tuple[float, float] | None, str]:
    """(range, how it was found) from the model's first scaling layer; (None, why) if none."""
    layer = _first_scaling_layer(model)
    kind = type(layer).__name__ if layer is not None else None
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, np.float64)
        offset = np.asarray(layer.offset, np.float64)
        if scale.size != 1 or offset.size != 1 or float(scale) <= 0:
            return None, f"a Rescaling layer '{layer.name}' with per-channel or negative scale"
        scale, offset = float(scale), float(offset)
        # The range the layer maps onto [0, 1] — or onto [-1, 1] when it shifts by about -1.
        target = (-1.0, 1.0) if offset < -0.5 else (0.0, 1.0)
        lo, hi = ((t - offset) / scale for t in target)
        return (_tidy(lo), _tidy(hi)), f"detected: Rescaling(scale={scale:.6g}, offset={offset:g}) layer '{layer.name}'"
    if kind == "Normalization":
        mean = np.asarray(getattr(layer, "mean", None), np.float64)
        variance = np.asarray(getattr(layer, "variance", None), np.float64)
        if mean.size == 0 or not np.all(np.isfinite(mean)):
            return None, f"a Normalization layer '{layer.name}' without a stored mean"
        # Pixels adapted on 0..255 have means in the tens or hundreds; on [0, 1], below 1.
        upper = float(np.max(mean + 3 * np.sqrt(np.maximum(variance, 0))))
        found = (0.0, 255.0) if upper > 2.0 else UNIT
        return found, (f"detected: Normalization layer '{layer.name}' with mean {float(np.mean(mean)):.3g}"
                       f" (pixels in {found[0]:g}..{found[1]:g})")
    return None, "no Rescaling or Normalization layer at the input"


def _first_scaling_layer(model):
    """The first layer after the input that is not transparent, looking inside nested models,
    if it is a Rescaling or Normalization layer; else None."""
    first = next(_effective_layers(model), None)
    return first if type(first).__name__ in ("Rescaling", "Normalization") else None


def _effective_layers(model):
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ in _TRANSPARENT:
            continue
        if getattr(layer, "layers", None) is not None:  # a nested model
            yield from _effective_layers(layer)
        else:
            yield layer


def _tidy(v: float) -> float:
    """255.00000000000003 -> 255.0: a scale of 1/255 stored as float32 is not exactly 1/255."""
    r = round(v)
    return float(r) if abs(v - r) < 1e-3 * max(1.0, abs(v)) else float(v)
