"""What several benchmark scripts share: TensorFlow on a given number of threads, a model with
its test images, and (in the reference's Python) the PyTorch rebuild of a model exported by
`autoattack_crosscheck.py`, checked against Keras' logits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def tensorflow_on(threads: int, onednn: bool = False):
    """TensorFlow, imported quietly, on `threads` threads (onednn: with its oneDNN kernels, as the
    cross-check measures, unless TF_ENABLE_ONEDNN_OPTS says otherwise)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if onednn:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def model_and_images(model: str, data: str | None, limit: int | None, split: str = "test", seed: int = 0):
    """(registry, classifier, x float32, y int64): the model and `limit` images of its data set's
    split (or of `data`), drawn stratified by class under `seed`."""
    import egide
    from egide.lab import services
    from egide.lab.data import load

    registry = egide.registry()
    clf = egide.Classifier.load(model)
    images = load(data or services.default_data(registry, model), split=split, limit=limit, seed=seed)
    return registry, clf, images.x.astype(np.float32), images.y.astype(np.int64)


def export_for_reference(clf, x, y, scratch: Path) -> None:
    """The model's layers, the images and their first logits, for `reference_model`."""
    from autoattack_crosscheck import export_layers

    np.save(scratch / "x.npy", x)
    np.save(scratch / "y.npy", y)
    np.save(scratch / "logits.npy", clf.predict_logits(x[:64]))
    (scratch / "layers.json").write_text(json.dumps(export_layers(clf.model, scratch)))
    (scratch / "input_range.json").write_text(json.dumps(list(clf.input_range)))


def reference_model(scratch: Path, torch):
    """(model, x, y) in PyTorch from `export_for_reference`'s files: the network with the map from
    [0, 1] to the model's pixel range in front, the images channels first. Stops if its logits
    differ from Keras' by more than 1e-3."""
    from autoattack_crosscheck import Affine, rebuild

    layers = json.loads((scratch / "layers.json").read_text())
    lo, hi = json.loads((scratch / "input_range.json").read_text())
    model = torch.nn.Sequential(Affine(hi - lo, lo), rebuild(layers, scratch, torch)).eval()
    x, y = np.load(scratch / "x.npy"), np.load(scratch / "y.npy")
    xt, yt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))), torch.from_numpy(y)
    keras_logits = np.load(scratch / "logits.npy")
    with torch.no_grad():
        gap = float(np.abs(model(xt[: len(keras_logits)]).numpy() - keras_logits).max())
    if gap > 1e-3:
        raise SystemExit(f"the PyTorch rebuild's logits differ from Keras' by {gap:.2e}: not comparable")
    return model, xt, yt
