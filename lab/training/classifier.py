"""Training a classifier on a Dataset: streamed batches, progress per epoch, best checkpoint.

Used by `egide train` for the built-in demo model (and by trainers later). The best weights by
validation accuracy are kept and restored at the end; the file is written atomically, so an
interrupted run never leaves a half-written model behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from egide.core.dataset import Dataset
from egide.core.errors import DataError, InputError

# Called after every epoch with (epoch, epochs, metrics): loss, accuracy, val_loss, val_accuracy.
EpochProgress = Callable[[int, int, dict], None]
# Called after every batch with (batches done in this epoch, batches per epoch).
BatchProgress = Callable[[int, int], None]


@dataclass
class TrainingResult:
    model: object  # the trained keras.Model, with the best weights restored
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train_classifier(
    model,
    train: Dataset,
    val: Dataset,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    on_epoch: EpochProgress | None = None,
    on_batch: BatchProgress | None = None,
) -> TrainingResult:
    """Train a Keras model that outputs logits; keep the weights of the best validation epoch."""
    import keras

    if len(train) == 0 or len(val) == 0:
        raise DataError("training needs a non-empty train split and a non-empty val split")
    if epochs < 1 or batch_size < 1 or learning_rate <= 0:
        raise InputError("epochs and batch_size must be >= 1 and learning_rate > 0")
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history: list[dict] = []
    best = {"epoch": 0, "val_accuracy": -1.0, "weights": None}
    started = time.perf_counter()

    class Monitor(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if on_batch:
                on_batch(batch + 1, steps)

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            metrics["seconds"] = time.perf_counter() - started
            history.append({"epoch": epoch + 1, **metrics})
            if metrics.get("val_accuracy", -1) > best["val_accuracy"]:
                best.update(epoch=epoch + 1, val_accuracy=metrics["val_accuracy"],
                            weights=[w.copy() for w in model.get_weights()])
            if on_epoch:
                on_epoch(epoch + 1, epochs, metrics)

    steps = int(np.ceil(len(train) / batch_size))
    model.fit(
        train.x, train.y, validation_data=(val.x, val.y), epochs=epochs, batch_size=batch_size,
        shuffle=True, verbose=0, callbacks=[Monitor()],
    )
    if best["weights"] is not None:
        model.set_weights(best["weights"])
    return TrainingResult(model, best["epoch"], best["val_accuracy"], history,
                          time.perf_counter() - started)


def save_model(model, path) -> Path:
    """Save a Keras model's architecture and weights atomically (written beside, then renamed
    into place). The optimizer state is left out: it triples the file and inference needs none."""
    if getattr(model, "optimizer", None) is not None:
        try:  # rebuilt from its config, the model is not compiled (clone_model would be)
            bare = type(model).from_config(model.get_config())
            bare.set_weights(model.get_weights())
            model = bare
        except (NotImplementedError, TypeError, ValueError):
            pass  # a subclassed model without a config: save it as it is
    path = Path(path)
    if path.suffix not in (".keras", ".h5"):
        raise InputError(f"{path}: save models as .keras (or .h5)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
