"""The loop every trainer defense shares (`Trainer.apply` runs it): train a copy of a model on a
trainer plugin's compiled batch step.

Input checks, a copy of the model to train, seeded shuffled batches, the eps warm-up,
validation after every epoch (clean and PGD accuracy at the training eps), keeping the best
epoch, and checkpoints that let a stopped run resume where it was, with the same result as an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from egide.core.batch_relaxed import batch_relaxed_function
from egide.core.classifier import Classifier
from egide.core.dataset import Dataset
from egide.core.errors import DataError, InputError, ModelError
from egide.core.trainer import Trainer, TrainingContext, TrainingProgress

from .checkpoint import read_checkpoint, write_checkpoint
from egide.lab.data.fitting import for_classifier

VAL_SHARE = 0.1  # held out of `train` when no validation split is given
VAL_BATCH = 256


def train(
    trainer: Trainer,
    clf: Classifier,
    train=None,
    val=None,
    *,
    progress: TrainingProgress | None = None,
    checkpoint=None,
    seed: int = 0,
) -> Classifier:
    """Train a copy of `clf` on `train`; return the best epoch's model as a Classifier.

    checkpoint: a file path. After every epoch the whole training state is written there
    atomically; calling again with the same path, model, data, parameters and seed resumes
    after the last finished epoch.
    """
    import keras
    import tensorflow as tf

    p = trainer.params
    if not isinstance(clf, Classifier):
        raise InputError(
            f"{trainer.name}: expected an egide.Classifier, got {type(clf).__name__}; wrap a "
            "Keras model with egide.Classifier.from_keras(model)"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"{trainer.name}: seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    train, val = _checked_data(trainer, clf, train, val, seed)

    keras.utils.set_random_seed(seed)  # initial weights (from_scratch) and dropout seeds
    model = _copy_model(clf, from_scratch=p.from_scratch)
    trained = Classifier.from_keras(model, input_range=clf.input_range, name=f"{clf.name}-{trainer.name}")
    ctx = TrainingContext.of(trained)
    steps_per_epoch = -(-len(train) // p.batch_size)
    total = p.epochs * steps_per_epoch
    optimizer = keras.optimizers.Adam(trainer.learning_rate(total))
    optimizer.build(model.trainable_variables)
    step = trainer.compiled_step(ctx, optimizer)
    validate = _validation_function(trained, p.eps, p.val_steps)

    identity = _identity(trainer, clf, train, val, seed)
    state = {"epoch": 0, "best": None, "history": []}
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = _restore(path, identity, model, optimizer)
    best_weights = state.pop("best_weights", None)
    # Live views of the run, readable from the progress callback (and after it).
    trainer.history, trainer.best = state["history"], state["best"]

    started = time.perf_counter()
    done = state["epoch"] * steps_per_epoch
    for epoch in range(state["epoch"], p.epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train))
        losses = []
        for start in range(0, len(train), p.batch_size):
            index = np.sort(order[start : start + p.batch_size])
            eps = p.eps * _warmup(p, done + 1, steps_per_epoch)
            loss = step(
                tf.constant(train.x[index]),
                tf.constant(train.y[index]),
                tf.constant(eps, tf.float32),
                tf.constant([seed, done], tf.int64),
            )
            losses.append(float(loss))
            done += 1
            if progress:
                progress(done, total, f"epoch {epoch + 1}/{p.epochs} loss {np.mean(losses):.4f}")

        clean, robust = _validate(validate, val, seed)
        metrics = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "eps": float(eps),
            "val_clean_accuracy": clean,
            "val_adversarial_accuracy": robust,
            "seconds": round(time.perf_counter() - started, 3),  # since this call started
        }
        state["history"].append(metrics)
        # Best: highest adversarial validation accuracy; a tie goes to the cleaner model.
        if state["best"] is None or (robust, clean) > (
            state["best"]["val_adversarial_accuracy"], state["best"]["val_clean_accuracy"]
        ):
            state["best"] = trainer.best = metrics
            best_weights = [v.numpy() for v in model.variables]
        state["epoch"] = epoch + 1
        if path is not None:
            _save(path, identity, state, model, optimizer, best_weights)
        if progress:
            progress(done, total, f"epoch {epoch + 1}/{p.epochs} loss {metrics['loss']:.4f} "
                     f"val clean {clean:.1%} adv {robust:.1%}")

    if best_weights is not None:
        for variable, value in zip(model.variables, best_weights):
            variable.assign(value)
    return trained


def _warmup(params, step: int, steps_per_epoch: int) -> float:
    """The share of eps used at training step `step` (1-based): a linear ramp, then 1."""
    ramp = params.eps_warmup_epochs * steps_per_epoch
    return 1.0 if ramp <= 0 else min(1.0, step / ramp)


def _checked_data(trainer: Trainer, clf: Classifier, train, val, seed: int) -> tuple[Dataset, Dataset]:
    """Both splits as Datasets that fit `clf` (or a clear error before any training)."""
    if train is None:
        raise InputError(
            f"{trainer.name} is a trainer: it needs training data, "
            "apply(clf, train=dataset, val=dataset)"
        )
    train = for_classifier(_as_dataset(train, clf, "training"), clf)
    clf.check_labels(train.y, len(train), what="training labels")
    if val is None:
        order = np.random.default_rng(seed).permutation(len(train))
        cut = max(1, int(len(train) * VAL_SHARE))
        if len(train) - cut < 1:
            raise DataError("the training split needs at least 2 images when no val split is given")
        train, val = train.subset(np.sort(order[cut:])), train.subset(np.sort(order[:cut]))
    else:
        val = for_classifier(_as_dataset(val, clf, "validation"), clf)
        clf.check_labels(val.y, len(val), what="validation labels")
    return train, val


def _identity(trainer: Trainer, clf: Classifier, train: Dataset, val: Dataset, seed: int) -> dict:
    """What a checkpoint must match to be resumed: trainer, params, seed, model and data."""
    start = hashlib.sha256(json.dumps(clf.model.get_config(), sort_keys=True, default=str).encode())
    for w in clf.model.get_weights():
        start.update(np.ascontiguousarray(w).tobytes())
    data = hashlib.sha256()
    for ds in (train, val):
        data.update(np.ascontiguousarray(ds.x).tobytes())
        data.update(np.ascontiguousarray(ds.y).tobytes())
    return {
        "trainer": trainer.name,
        "params": trainer.params.model_dump(mode="json"),
        "seed": seed,
        "model": start.hexdigest()[:16],
        "data": data.hexdigest()[:16],
    }


def _as_dataset(data, clf: Classifier, what: str) -> Dataset:
    """A Dataset as given, or one made of a pair (x, y) whose labels are checked against clf."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        y = clf.check_labels(y, len(np.asarray(y)), what=f"{what} labels")
        return Dataset(x, y, tuple(str(i) for i in range(clf.num_classes)))
    raise InputError(
        f"{what} data must be an egide.Dataset or a pair (x, y), got {type(data).__name__}"
    )


def _copy_model(clf: Classifier, from_scratch: bool):
    """A new model with the same architecture; the same weights unless from_scratch."""
    import keras

    try:
        model = keras.models.clone_model(clf.model)
    except Exception as exc:  # subclassed models without get_config cannot be cloned
        raise ModelError(
            f"{clf.name}: the model cannot be copied for training ({exc}); trainers need a "
            "Sequential or functional Keras model (or a subclass with get_config/from_config)"
        ) from None
    if not from_scratch:
        model.set_weights(clf.model.get_weights())
    return model


def _validation_function(clf: Classifier, eps: float, steps: int):
    """Compiled (x, y, seed) -> (clean correct, PGD correct) counts, PGD at the training eps."""
    import tensorflow as tf

    from egide.core.gradients import cross_entropy_pass, projected_gradient_ascent

    model_pass = cross_entropy_pass(clf, targeted=False)

    @batch_relaxed_function
    def validate(x, y, seed):
        x_adv = projected_gradient_ascent(model_pass, x, y, eps, steps, 2.5 * eps / steps, seed,
                                          clf.clip)
        logits = clf.logits(tf.concat([x, x_adv], axis=0))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=y.dtype), tf.concat([y, y], 0))
        n = tf.shape(x)[0]
        return tf.math.count_nonzero(correct[:n]), tf.math.count_nonzero(correct[n:])

    return validate


def _validate(validate, val: Dataset, seed: int) -> tuple[float, float]:
    import tensorflow as tf

    clean = robust = 0
    for b, (x, y) in enumerate(val.batches(VAL_BATCH)):
        c, r = validate(tf.constant(x), tf.constant(y), tf.constant([seed, -1 - b], tf.int64))
        clean, robust = clean + int(c), robust + int(r)
    return clean / len(val), robust / len(val)


def _save(path: Path, identity: dict, state: dict, model, optimizer, best_weights) -> None:
    write_checkpoint(
        path,
        {
            "model": [v.numpy() for v in model.variables],
            "optimizer": [v.numpy() for v in optimizer.variables],
            "best": best_weights or [],
        },
        {**identity, **state},
    )


def _restore(path: Path, identity: dict, model, optimizer) -> dict:
    """Load a checkpoint's state into model and optimizer; refuse one from another run."""
    groups, header = read_checkpoint(path)
    differs = [key for key in identity if header.get(key) != identity[key]]
    if "params" in differs:
        theirs, ours = header.get("params") or {}, identity["params"]
        changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        differs[differs.index("params")] = "params (" + ", ".join(
            f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in changed
        ) + ")"
    if differs:
        raise InputError(
            f"{path}: this checkpoint is from another training run (it differs in "
            f"{'; '.join(differs)}); rerun with the same model, data, parameters and seed to "
            "resume, or delete the checkpoint (or choose another path) to start over"
        )
    if len(groups["model"]) != len(model.variables) or len(groups["optimizer"]) != len(optimizer.variables):
        raise InputError(f"{path}: the checkpoint does not match this model's variables; delete it")
    for variable, value in zip(model.variables, groups["model"]):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, groups["optimizer"]):
        variable.assign(value)
    return {
        "epoch": int(header["epoch"]),
        "best": header.get("best"),
        "history": list(header.get("history") or []),
        "best_weights": groups["best"] or None,
    }
