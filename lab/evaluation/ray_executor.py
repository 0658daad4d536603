"""Attacks sharded over a Ray cluster: the same per-image results as a local run, on many workers.

A group of jobs becomes one Ray task per batch of each job, all submitted at once. The groups
of an evaluation: every attack at every budget; each suite member at every budget; every attack
on a defense, both ways; the supervised detectors' fit examples; the detector-aware attack at
every budget. Task i of a job attacks its images [i * batch_size, (i + 1) * batch_size) with the
batch seed (seed, i) — exactly what a local run with the same batch size does for its i-th batch,
a randomized defense's draws included (`Classifier.reseed`) — so per-image results depend neither
on how many workers there are nor on whether Ray is used at all.

What travels through Ray's object store, once per evaluation:
- the model, as its saved `.keras` file;
- each batch's images, alone (shared by every job on them; a task never fetches the data set);
- a fitted detector, as its saved file. A defense travels as its plugin name and parameters.
A worker process keeps the models, views, detectors and attacks it has built (`WORKER_CACHE`),
so its later tasks trace nothing new. A job whose classifier cannot travel this way (a subclass
of the user's own, a defense or detector that is not the installed plugin of its name) runs
here, on the driver, while the cluster works.

A worker that dies is replaced and its task retried by Ray (`RETRIES`). An error in the task
itself (a bad model, a bad parameter) is not retried: it fails the run once, with its message.
A cancel stops the running tasks with their worker processes.

Ray is imported only here, and only when an evaluation asks for it (`executor: {"ray": ...}`,
`egide evaluate --ray`): without it nothing changes. Install it with `pip install egide[ray]`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import tempfile
import time
import weakref
from pathlib import Path

import numpy as np

from egide.core.classifier import Classifier
from egide.core.errors import InputError
from egide.core.preprocess import PreprocessedClassifier
from egide.core.results import AttackResult, attack_success

RETRIES = 3  # a task whose worker process died is run again, up to this many times
DEFAULT_BATCH = 64  # images per task when the evaluation sets no batch size
POLL_S = 0.2  # while no task finishes, progress is still reported (and a cancel seen) this often
WORKER_CACHE = 32  # models, defended views and attacks a worker process keeps (least recently used go)


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
    """Runs groups of attack jobs as one Ray task per batch of images."""

    def __init__(self, address: str | None, *, cpus_per_task: float = 1, gpus_per_task: float = 0):
        self.ray = connect(address)
        _check_feasible(self.ray, address, cpus_per_task, gpus_per_task)
        self.threads = max(1, int(cpus_per_task))
        self._shipped: dict[int, tuple] = {}  # id(base classifier) -> (model ref, digest, range)
        self._shards: dict[tuple, object] = {}  # (ids of x, y, target, start, stop) -> object ref
        self._watched: set[int] = set()  # ids of the arrays whose shards are kept
        options = dict(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=RETRIES,
                       retry_exceptions=False)
        self._task = self.ray.remote(_attack_batch).options(**options)
        self._guard_task = self.ray.remote(_guard_batch).options(**options)

    def run_all(self, jobs, *, batch_size: int | None, seed: int, progress=None) -> list[AttackResult]:
        """Every batch of every job as a Ray task, at once; the jobs' results, in order. Jobs
        whose classifiers cannot travel run here meanwhile."""
        from egide.lab.evaluation.running import LocalExecutor

        batch_size = batch_size or DEFAULT_BATCH
        total = sum(len(job.x) for job in jobs)
        pending, parts, stay = {}, {}, []
        for j, job in enumerate(jobs):
            views = _views(job.real, job.attacked)
            if views is None or not len(job.x):
                stay.append(j)
                continue
            model_ref, digest, loading = self._model(views[0])
            for index, start in enumerate(range(0, len(job.x), batch_size)):
                stop = min(start + batch_size, len(job.x))
                ref = self._task.remote(model_ref, digest, loading, views[1], job.attack.name,
                                        job.attack.params.model_dump(mode="json"),
                                        self._shard(job.x, job.y, job.target, start, stop),
                                        batch_size, seed, index, self.threads)
                pending[ref] = (j, start)
        results: list[AttackResult | None] = [None] * len(jobs)
        here, done = LocalExecutor(), 0
        if progress:
            progress(0, total, jobs[0].label if jobs else "")
        try:
            for j in stay:  # while the cluster works
                results[j] = here.run_all([jobs[j]], batch_size=batch_size, seed=seed)[0]
                done += len(jobs[j].x)
        except BaseException:
            self._cancel(pending)
            raise
        report = (lambda n, _total, label: progress(done + n, total, label)) if progress else None
        for (j, start), part in self._gather(pending, total, report, lambda j, _s: jobs[j].label).items():
            parts.setdefault(j, {})[start] = part
        for j, shards in parts.items():
            results[j] = _merged(jobs[j], [shards[s] for s in sorted(shards)], seed, batch_size)
        return results

    def run_guard_attacks(self, attacks, clf, det, surrogate, x, y, *, batch_size: int | None,
                          seed: int, progress=None) -> list:
        """Detector-aware attacks (lab/guard/attack.py) on the guard (clf, det), every batch of
        every budget as a Ray task at once; here when the model or detector cannot travel."""
        from egide.lab.evaluation.running import LocalExecutor

        detectors = [_saved_detector(d) for d in (det, surrogate) if d is not None]
        if type(clf) is not Classifier or None in detectors:
            return LocalExecutor().run_guard_attacks(attacks, clf, det, surrogate, x, y,
                                                     batch_size=batch_size, seed=seed, progress=progress)
        batch_size = batch_size or DEFAULT_BATCH
        model_ref, digest, loading = self._model(clf)
        shipped = [(self.ray.put(blob), key) for blob, key in detectors]
        shipped += [(None, None)] * (2 - len(shipped))
        shards = [self._shard(x, y, None, start, min(start + batch_size, len(x)))
                  for start in range(0, len(x), batch_size)]
        pending = {}
        for a, attack in enumerate(attacks):
            for index, shard in enumerate(shards):
                ref = self._guard_task.remote(model_ref, digest, loading, *shipped[0], *shipped[1],
                                              attack.params.model_dump(mode="json"), shard, batch_size,
                                              seed, index, self.threads)
                pending[ref] = (a, index)
        parts = self._gather(pending, len(attacks) * len(x), progress,
                             lambda a, index: f"{det.name} attacked adaptively")
        results = []
        for a, attack in enumerate(attacks):
            batches = [parts[(a, index)] for index in range(len(shards))]
            results.append(attack.result(
                clf, det, surrogate, np.concatenate([b["x_adv"] for b in batches]), np.asarray(y),
                np.concatenate([b["evaded"] for b in batches]), float(sum(b["seconds"] for b in batches))))
        return results

    def _gather(self, pending: dict, total: int, progress, label) -> dict:
        """Each task's output by its key, as they finish; progress in images. On an error or a
        cancel, the tasks still pending are cancelled: nothing keeps running for nobody."""
        parts, done, last = {}, 0, ""
        try:
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                if not ready:  # nothing finished: still say so, which is when a cancel is seen
                    if progress:
                        progress(done, total, last)
                    continue
                key = pending.pop(ready[0])
                try:
                    parts[key] = self.ray.get(ready[0])
                except self.ray.exceptions.RayTaskError as exc:  # the task's own error, once
                    raise exc.as_instanceof_cause() from None
                done += len(parts[key]["x_adv"])
                last = label(*key)
                if progress:
                    progress(done, total, last)  # may raise: a cancelled job
        finally:
            self._cancel(pending)
        return parts

    def _cancel(self, pending) -> None:
        """Cancel tasks: the queued never start, the running are stopped with their worker
        process (a compiled attack loop cannot be interrupted inside), and none is retried."""
        for ref in pending:
            self.ray.cancel(ref, force=True)

    def _shard(self, x, y, target, start: int, stop: int):
        """One batch's images in the object store, put there once: every attack, budget and
        defense on the same arrays shares it, and a task fetches its own batch only. Forgotten
        when one of the arrays is (so its id cannot come back for other images)."""
        key = (id(x), id(y), id(target), start, stop)
        if key not in self._shards:
            shard = {"x": x[start:stop], "y": y[start:stop],
                     "target": None if target is None else target[start:stop]}
            self._shards[key] = self.ray.put(shard)
            for array in (x, y, target):
                if array is not None and id(array) not in self._watched:
                    self._watched.add(id(array))
                    weakref.finalize(array, self._forget, id(array))
        return self._shards[key]

    def _forget(self, array_id: int) -> None:
        self._watched.discard(array_id)
        for key in [k for k in list(self._shards) if array_id in k[:3]]:
            self._shards.pop(key, None)

    def _model(self, clf: Classifier):
        """The model's file in the object store, put there once per evaluation, and how to load it:
        a saved .keras file, or the file a converted model came from (an ONNX one is converted
        again in each worker: its Lambda layers do not load back in Keras' safe mode)."""
        if id(clf) not in self._shipped:
            from egide.lab.training import save_model

            if clf.conversion is not None:
                blob, suffix = Path(clf.source_file).read_bytes(), Path(clf.source_file).suffix
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    blob, suffix = save_model(clf.model, Path(tmp) / "model.keras").read_bytes(), ".keras"
            digest = hashlib.sha256(blob).hexdigest()[:16]
            loading = {"input_range": tuple(clf.input_range), "suffix": suffix,
                       "normalize": clf.conversion["normalize"] if clf.conversion else None}
            self._shipped[id(clf)] = (self.ray.put(blob), digest, loading)
        return self._shipped[id(clf)]


def _check_feasible(ray, address, cpus: float, gpus: float) -> None:
    """Refuse at once a task no node of the cluster can hold (Ray would wait for one forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    where = f"the Ray cluster at {address}" if address else "the local Ray cluster"
    if gpus and not any(n.get("GPU", 0) >= gpus for n in nodes):
        most = max((n.get("GPU", 0) for n in nodes), default=0)
        raise InputError(
            f"gpus_per_task={gpus:g}, but no node of {where} has that many GPUs (the most is "
            f"{most:g}): start GPU workers with `ray start --address ... --num-gpus N`, or set "
            "gpus_per_task to 0 to attack on CPUs")
    if not any(n.get("CPU", 0) >= cpus for n in nodes):
        most = max((n.get("CPU", 0) for n in nodes), default=0)
        raise InputError(f"cpus_per_task={cpus:g}, but no node of {where} has that many CPUs (the "
                         f"most is {most:g}): lower cpus_per_task")


def _views(real: Classifier, attacked: Classifier):
    """(the plain classifier to ship, how the worker rebuilds the job's views), or None when they
    cannot travel as a saved model plus an installed defense."""
    if type(real) is Classifier and attacked is real:
        return real, None
    if not (type(real) is PreprocessedClassifier and type(real.base) is Classifier):
        return None
    from egide.core.registry import registry

    defense = real.defense
    if registry().get("defense", defense.name) is not type(defense):
        return None  # not the installed plugin of that name: the worker could not rebuild it
    view = {"defense": defense.name, "params": defense.params.model_dump(mode="json")}
    if attacked is real:
        return real.base, {**view, "adaptive": None}
    if (type(attacked) is PreprocessedClassifier and attacked.is_adaptive and attacked.base is real.base
            and attacked.defense is defense):
        return real.base, {**view, "adaptive": attacked.eot_samples}
    return None


def _merged(job, shards: list[dict], seed: int, batch_size: int) -> AttackResult:
    """One job's result from its batches' (in order)."""
    merged = {k: np.concatenate([s[k] for s in shards]) for k in shards[0] if k != "seconds"}
    target = job.target
    success = attack_success(job.y, merged["y_pred"], merged["y_pred_adv"], target)
    return AttackResult(
        x_adv=merged["x_adv"], y=np.asarray(job.y), y_pred=merged["y_pred"],
        y_pred_adv=merged["y_pred_adv"], success=success, l2=merged["l2"], linf=merged["linf"], l1=merged["l1"],
        # The workers' own time on the job's batches: what it cost, whatever ran beside it.
        seconds=float(sum(s["seconds"] for s in shards)), config=job.attack.config(), seed=seed,
        batch_size=batch_size, target=target)


# ---- in a worker process --------------------------------------------------------------------
_cache: collections.OrderedDict = collections.OrderedDict()  # key -> model, view or attack


def _cached(key, build):
    """`build()` once per worker process for `key`, the least recently used dropped past the cap."""
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    value = _cache[key] = build()
    if len(_cache) > WORKER_CACHE:
        _cache.popitem(last=False)
    return value


def _attack_batch(model_blob, digest, loading, view, attack_name, params, shard, batch_size,
                  seed, index, threads):
    """In a worker: attack one batch's images as batch `index` of the whole run."""
    from egide.core.registry import registry
    from egide.lab.services import measured_on

    started = time.perf_counter()
    base = _cached(("model", digest), lambda: _load_model(model_blob, loading, threads))
    real = attacked = base
    if view is not None:
        # One defended classifier per defense, shared by its plain and adaptive jobs.
        key = json.dumps([view["defense"], view["params"]], sort_keys=True)
        real = attacked = _cached(("defended", digest, key), lambda: registry().create(
            "defense", view["defense"], **view["params"]).apply(base))
        if view["adaptive"] is not None:
            attacked = _cached(("adaptive", digest, key, view["adaptive"]),
                               lambda: real.adaptive(view["adaptive"]))
    attack = _cached(("attack", attack_name, json.dumps(params, sort_keys=True)),
                     lambda: registry().create("attack", attack_name, **params))
    result = attack.run(attacked, shard["x"], shard["y"], target=shard["target"],
                        batch_size=batch_size, seed=seed, first_batch=index)
    if attacked is not real:
        result = measured_on(real, result, shard["x"], first_batch=index)
    return {"x_adv": result.x_adv, "y_pred": result.y_pred, "y_pred_adv": result.y_pred_adv,
            "l2": result.l2, "linf": result.linf, "l1": result.l1, "seconds": time.perf_counter() - started}


def _guard_batch(model_blob, digest, loading, det_blob, det_key, surrogate_blob, surrogate_key,
                 params, shard, batch_size, seed, index, threads):
    """In a worker: the detector-aware attack on one batch, as batch `index` of the whole run."""
    from egide.lab.guard.attack import GuardAttack

    started = time.perf_counter()
    clf = _cached(("model", digest), lambda: _load_model(model_blob, loading, threads))
    det = _cached(("detector", digest, det_key), lambda: _load_detector(det_blob, clf))
    surrogate = (None if surrogate_blob is None else
                 _cached(("detector", digest, surrogate_key), lambda: _load_detector(surrogate_blob, clf)))
    found = GuardAttack(**params).run(clf, det, shard["x"], shard["y"], seed=seed, batch_size=batch_size,
                                      surrogate=surrogate, first_batch=index)
    return {"x_adv": found.x_adv, "evaded": found.evaded, "seconds": time.perf_counter() - started}


def _saved_detector(det):
    """(the fitted detector's saved file, its digest), or None when a worker could not rebuild it
    (not the installed plugin of its name, or a plugin that cannot be saved)."""
    from egide.core.registry import registry

    if det.name not in registry().names("detector") or registry().get("detector", det.name) is not type(det):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            blob = det.save(Path(tmp) / "detector.npz").read_bytes()
        except NotImplementedError:
            return None
    return blob, hashlib.sha256(blob).hexdigest()[:16]


def _load_detector(blob, clf):
    from egide.core.detector import load_detector

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detector.npz"
        path.write_bytes(blob)
        return load_detector(path, clf)


def _load_model(model_blob, loading: dict, threads) -> Classifier:
    """The model from its file (TensorFlow held to `threads` threads in this process); `loading`:
    the file's suffix, the input range and an ONNX model's normalisation."""
    import tensorflow as tf

    try:  # only possible before TensorFlow runs anything in this process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        # Ray shows a task only the GPUs it holds; tasks sharing one (gpus_per_task < 1) must
        # not each take all its memory up front, as TensorFlow otherwise does.
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("model" + loading["suffix"])
        path.write_bytes(model_blob)
        return Classifier.load(path, input_range=loading["input_range"], normalize=loading["normalize"])
