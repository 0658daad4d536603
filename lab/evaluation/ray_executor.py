"""Attacks sharded over a Ray cluster: the same per-image results as a local run, on many workers.

An attack run on N images becomes ceil(N / batch_size) Ray tasks, one per batch: task i attacks
images [i * batch_size, (i + 1) * batch_size) with the batch seed (seed, i) — exactly what a
local run with the same batch size does for its i-th batch — so the per-image results do not
depend on how many workers there are, nor on whether Ray is used at all. The model travels once,
as its saved `.keras` file, and each batch's images once, through Ray's object store (a task
fetches its own batch, never the whole data set); each worker process loads the model once. A worker that dies is replaced and its task retried by Ray
(`RETRIES`); an error in the task itself (a bad model, a bad parameter) is not retried: it fails
the run once, with its message.

Ray is imported only here, and only when an evaluation asks for it (`executor: {"ray": ...}`,
`egide evaluate --ray`): without it nothing changes. Install it with `pip install egide[ray]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from egide.core.errors import InputError

RETRIES = 3  # a task whose worker process died is run again, up to this many times
DEFAULT_BATCH = 64  # images per task when the evaluation sets no batch size
_models: dict[str, object] = {}  # in a worker process: model digest -> Classifier


def connect(address: str | None):
    """Join the Ray cluster at `address` ("" or None: start a local one on this machine)."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'egide[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    return ray


class RayExecutor:
    """Runs attacks on the undefended model as one Ray task per batch of images."""

    def __init__(self, address: str | None, threads_per_worker: int = 1):
        self.ray = connect(address)
        self.threads = threads_per_worker
        self._shipped: dict[int, tuple] = {}  # id(classifier) -> (model ref, digest)
        self._task = self.ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_attack_batch)

    def _model(self, clf):
        """The model's saved file in the object store, put there once per evaluation."""
        if id(clf) not in self._shipped:
            import hashlib

            from egide.lab.training import save_model

            with tempfile.TemporaryDirectory() as tmp:
                path = save_model(clf.model, Path(tmp) / "model.keras")
                blob = path.read_bytes()
            digest = hashlib.sha256(blob).hexdigest()[:16]
            self._shipped[id(clf)] = (self.ray.put(blob), digest, tuple(clf.input_range))
        return self._shipped[id(clf)]

    def attack_on(self, attack, clf, x, y, *, target=None, batch_size: int | None = None,
                  seed: int = 0, progress=None):
        """`attack.run(clf, x, y, ...)` with its batches run as Ray tasks; the same AttackResult."""
        from egide.core.results import AttackResult

        batch_size = batch_size or DEFAULT_BATCH
        model_ref, digest, input_range = self._model(clf)
        n = len(x)
        started = time.perf_counter()
        pending = {}
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            # Each batch's images go to the object store once, alone: a task fetches its own.
            shard = {"x": np.asarray(x[start:stop]), "y": np.asarray(y[start:stop]),
                     "target": None if target is None else np.asarray(target[start:stop])}
            ref = self._task.remote(model_ref, digest, input_range, attack.name,
                                    attack.params.model_dump(mode="json"), self.ray.put(shard),
                                    batch_size, seed, index, self.threads)
            pending[ref] = (start, stop)
        parts: dict[int, dict] = {}
        done = 0
        try:
            if progress:
                progress(0, n)
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1)
                start, stop = pending.pop(ready[0])
                try:
                    parts[start] = self.ray.get(ready[0])
                except self.ray.exceptions.RayTaskError as exc:  # the task's own error, once
                    raise exc.as_instanceof_cause() from None
                done += stop - start
                if progress:
                    progress(done, n)  # may raise: a cancelled job
        finally:
            for ref in pending:  # an error or a cancel: nothing keeps running for nobody
                self.ray.cancel(ref)
        merged = {k: np.concatenate([parts[s][k] for s in sorted(parts)]) for k in parts[0]}
        success = (merged["y_pred_adv"] == target) if target is not None else merged["y_pred_adv"] != y
        return AttackResult(
            x_adv=merged["x_adv"], y=np.asarray(y), y_pred=merged["y_pred"],
            y_pred_adv=merged["y_pred_adv"], success=success, l2=merged["l2"], linf=merged["linf"],
            seconds=time.perf_counter() - started, config=attack.config(), seed=seed,
            batch_size=batch_size, target=target)


def _attack_batch(model_blob, digest, input_range, attack_name, params, shard, batch_size, seed,
                  index, threads):
    """In a worker: attack one batch's images as batch `index` of the whole run."""
    clf = _worker_classifier(model_blob, digest, input_range, threads)
    from egide.core.registry import registry

    attack = registry().create("attack", attack_name, **params)
    result = attack.run(clf, shard["x"], shard["y"], target=shard["target"],
                        batch_size=batch_size, seed=seed, first_batch=index)
    return {"x_adv": result.x_adv, "y_pred": result.y_pred, "y_pred_adv": result.y_pred_adv,
            "l2": result.l2, "linf": result.linf}


def _worker_classifier(model_blob, digest, input_range, threads):
    """The model, loaded once per worker process (and TensorFlow held to `threads` threads)."""
    if digest not in _models:
        import tensorflow as tf

        try:  # only possible before TensorFlow runs anything in this process
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
        from egide.core.classifier import Classifier

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            path.write_bytes(model_blob)
            _models[digest] = Classifier.load(path, input_range=input_range)
    return _models[digest]
