"""`.onnx` model files: converted at load into a Keras model with exact gradients, then checked
against onnxruntime.

The conversion is onnx2keras's, with `change_ordering`: the ONNX graph (NCHW, as PyTorch exports
it) is rebuilt channels-last, so it takes the same NHWC images as every Keras model and runs on
CPUs (TensorFlow's CPU convolutions are NHWC only). A per-channel standardisation the model expects
((v - mean) / std, as torchvision's transforms do) is a layer in front of it, and the input range
(`input_range`) is the Classifier's as for any model: budgets stay in image units.

Nothing is trusted: the converted model's logits are compared with onnxruntime's on probe images
spread over the input range at load, and again on the first images of every evaluation (`check`);
a difference above TOLERANCE refuses the model and names it. What
cannot be converted is refused before any work, each with its reason: an operator the converter
lacks, several inputs or outputs, a shape that is not one image (N, C, H, W) of fixed size, an
output that is not one score per class.

Volume networks (N, C, D, H, W) go through egide's own converter (`_onnx_volumes.py`) instead:
onnx2keras's channels-last rebuild maps axes for 4-D tensors only, and TensorFlow's CPU
convolutions cannot run the channels-first graph (docs/decisions.md, "Volumes"). The same checks
against onnxruntime apply.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from egide.core import Classifier, ModelError, ModelFormat, hookimpl

TOLERANCE = 1e-4  # largest |logit difference| against onnxruntime, relative to the logits' scale (at least 1)
PROBES = 8  # images the conversion is checked on
INSTALL = "pip install 'egide[onnx]'"
STANDARD_DOMAINS = ("", "ai.onnx")


def _modules():
    import logging

    logging.getLogger("onnx2keras").setLevel(logging.ERROR)  # its per-layer notes are not the user's concern
    try:
        import onnx
        import onnxruntime
        from onnx2keras import onnx_to_keras
        from onnx2keras.layers import AVAILABLE_CONVERTERS
    except ImportError as exc:
        raise ModelError(f"ONNX models need the onnx extra ({exc.name} is missing): {INSTALL}") from None
    return onnx, onnxruntime, onnx_to_keras, AVAILABLE_CONVERTERS


class OnnxFormat(ModelFormat):
    """An ONNX image classifier: one (N, C, H, W) input, one (N, classes) output."""

    name = "onnx"
    title = "ONNX model file (converted to Keras by onnx2keras, checked against onnxruntime)"
    suffixes = (".onnx",)

    def load_file(self, path, input_range=None, normalize=None) -> Classifier:
        onnx, ort, onnx_to_keras, converters = _modules()
        path = Path(path)
        started = time.perf_counter()
        try:
            # Never follow a tensor's pointer to another file: a file from elsewhere could name any path.
            graph_model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf raises many types
            raise ModelError(f"{path}: not a valid ONNX model: {exc}") from None
        _self_contained(path, graph_model)
        try:
            onnx.checker.check_model(graph_model)
        except Exception as exc:
            raise ModelError(f"{path}: not a valid ONNX model: {exc}") from None
        name, shape = _one_image_input(path, graph_model)
        _one_class_output(path, graph_model)
        if len(shape) == 5:
            return self._load_volume_network(path, graph_model, name, shape, input_range, normalize, started)
        missing = sorted({node.op_type for node in graph_model.graph.node} - set(converters))
        if missing:
            raise ModelError(f"{path}: the ONNX operators {', '.join(missing)} cannot be converted (onnx2keras "
                             "has no converter for them); export the model without them, e.g. a plain "
                             "activation instead of a fused one")
        import keras

        layout = keras.backend.image_data_format()
        try:
            converted = onnx_to_keras(graph_model, [name], input_shapes=[shape[1:]], verbose=False,
                                      change_ordering=True)
        except Exception as exc:
            raise ModelError(f"{path}: onnx2keras could not convert the model: {type(exc).__name__}: {exc}") from None
        finally:  # the converter switches Keras' global layout while it works, even when it fails
            keras.backend.set_image_data_format(layout)
        import onnx2keras

        converter = f"onnx2keras {getattr(onnx2keras, '__version__', '')}".strip()
        return self._wrapped(path, converted, shape, input_range, normalize, name, started, converter)

    def _load_volume_network(self, path, graph_model, name, shape, input_range, normalize, started) -> Classifier:
        from . import _onnx_volumes

        missing = _onnx_volumes.unsupported(graph_model)
        if missing:
            raise ModelError(f"{path}: the ONNX operators {', '.join(missing)} of this volume network cannot be "
                             f"converted (egide's volume converter knows {', '.join(sorted(_onnx_volumes.SUPPORTED))})")
        try:
            converted = _onnx_volumes.convert(graph_model, name, shape)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        return self._wrapped(path, converted, shape, input_range, normalize, name, started, _onnx_volumes.CONVERTER)

    def _wrapped(self, path, converted, shape, input_range, normalize, name, started, converter) -> Classifier:
        """The converted network behind the standardisation the model expects, as a checked Classifier."""
        import keras

        _, ort, _, _ = _modules()
        channels, *spatial = shape[1:]
        inputs = keras.Input((*spatial, channels))
        x = inputs if normalize is None else _standardize(*normalize, channels)(inputs)
        model = keras.Model(inputs, converted(x), name=path.stem.replace(" ", "_"))
        clf = Classifier(model, input_range=input_range, name=path.stem)
        clf.source_file = str(path.resolve())
        clf.conversion = _checked(path, clf, ort, name, normalize, converter)
        clf.conversion["seconds"] = round(time.perf_counter() - started, 3)
        return clf

    def check(self, clf: Classifier, x) -> dict:
        """Compare the converted model with onnxruntime on the user's own images x."""
        difference, tolerance = _compare(Path(clf.source_file), clf, x, clf.conversion["input_name"],
                                         clf.conversion["normalize"])
        return {"images": len(x), "max_abs_difference": difference, "tolerance": tolerance}


def _standardize(mean, std, channels: int):
    """(v - mean) / std per channel, as a Keras layer in front of the converted model."""
    import keras

    if len(mean) not in (1, channels):
        raise ModelError(f"normalize gives {len(mean)} means and stds for a model of {channels} channels: give "
                         f"{channels} (or one for all)")
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return keras.layers.Lambda(lambda v: (v - mean) / std, name="standardize")


def _self_contained(path: Path, graph_model) -> None:
    """Refuse what would make loading reach outside the file: weights stored in other files, and
    operators from custom domains (which need a native library of their own)."""
    from onnx import TensorProto

    if any(t.data_location == TensorProto.EXTERNAL for t in graph_model.graph.initializer):
        raise ModelError(f"{path}: its weights are stored in separate files (ONNX external data); save the model "
                         "as one file (onnx.save(model, path, save_as_external_data=False), under 2 GB)")
    custom = sorted({n.domain for n in graph_model.graph.node if n.domain not in STANDARD_DOMAINS})
    if custom:
        raise ModelError(f"{path}: operators from the custom domains {', '.join(custom)} need a library of their "
                         "own and are refused; export the model with standard ONNX operators")


def _one_image_input(path: Path, graph_model) -> tuple[str, list[int]]:
    """The image input's name and its (N, C, H, W) shape (N, C, D, H, W for volumes) with all but N fixed."""
    initialized = {t.name for t in graph_model.graph.initializer}
    inputs = [i for i in graph_model.graph.input if i.name not in initialized]
    if len(inputs) != 1:
        raise ModelError(f"{path}: the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                         "egide attacks image classifiers with one image input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) not in (4, 5):
        raise ModelError(f"{path}: the input '{inputs[0].name}' has shape {dims}; expected one image batch "
                         "(N, C, H, W) or volume batch (N, C, D, H, W)")
    if any(d is None or d < 1 for d in dims[1:]):
        raise ModelError(f"{path}: the input '{inputs[0].name}' has a dynamic size {dims}; export it with a fixed "
                         "image size (torch.onnx.export with a dummy input of the size it was trained on)")
    return inputs[0].name, [None, *dims[1:]]


def _one_class_output(path: Path, graph_model) -> None:
    outputs = graph_model.graph.output
    if len(outputs) != 1:
        raise ModelError(f"{path}: the model has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}); "
                         "export only the class scores")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in outputs[0].type.tensor_type.shape.dim]
    if len(dims) != 2:
        raise ModelError(f"{path}: the output '{outputs[0].name}' has shape {dims}; expected class scores "
                         "(N, classes), e.g. not a segmentation map")


def _probes(shape) -> np.ndarray:
    """Images spread over the whole input range: seeded noise, black, mid-grey."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.uniform(0, 1, (PROBES - 2, *shape)), np.zeros((1, *shape)),
                           np.full((1, *shape), 0.5)]).astype(np.float32)


def _compare(path: Path, clf: Classifier, x: np.ndarray, input_name: str, normalize) -> tuple[float, float]:
    """(largest |output difference| between the converted model and onnxruntime on x, the tolerance);
    a ModelError when it is above the tolerance."""
    import onnxruntime as ort

    low, high = clf.input_range
    pixels = low + np.asarray(x, np.float32) * (high - low)
    if normalize is not None:
        pixels = (pixels - np.asarray(normalize[0], np.float32)) / np.asarray(normalize[1], np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    channels_first = np.moveaxis(pixels, -1, 1)  # NHWC -> NCHW, NDHWC -> NCDHW
    reference = session.run(None, {input_name: np.ascontiguousarray(channels_first, np.float32)})[0]
    ours = np.asarray(clf.model(np.asarray(x, np.float32)))  # the model's own output, as onnxruntime's
    difference = float(np.max(np.abs(ours - reference)))
    tolerance = TOLERANCE * max(1.0, float(np.max(np.abs(reference))))
    if not difference <= tolerance:
        raise ModelError(f"{path}: the converted model disagrees with onnxruntime by up to {difference:.3g} in its "
                         f"outputs (tolerance {tolerance:.3g}): refused, its gradients would not be the model's")
    return difference, tolerance


def _checked(path: Path, clf: Classifier, ort, input_name: str, normalize, converter: str) -> dict:
    """The conversion's record, after comparing it with onnxruntime on probe images."""
    difference, tolerance = _compare(path, clf, _probes(clf.input_shape), input_name, normalize)
    return {"from": "onnx", "format": OnnxFormat.name, "converter": converter,
            "checked_against": f"onnxruntime {ort.__version__}", "probe_images": PROBES,
            "max_abs_difference": difference, "tolerance": tolerance,
            "input_name": input_name, "normalize": normalize}


@hookimpl
def egide_register_model_formats(register):
    register(OnnxFormat)
