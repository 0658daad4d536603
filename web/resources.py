"""What jobs and requests share within one app, kept apart from what a job does (work.py):
loaded models and data sets (loading a Keras model is slow), defended classifiers, the
out-of-distribution checks, and fitted detectors (in memory, and saved under the instance folder
so a restart does not refit; a fit runs in the background, one at a time). Also where jobs'
attacks run: here, or the Ray cluster the server was started with."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from egide.lab.choices import reference_attack
from egide.lab.data import Draw, drawn, for_classifier
from egide.lab.data.splits import match

DETECTOR_EPS = 4 / 255  # budget of the PGD examples a supervised detector is fitted on


def _key(name: str, params: dict) -> str:
    return name + json.dumps(params, sort_keys=True)


MAX_FITS_WAITING = 4  # detector fits queued or running at once; more is a 429


class FitsBusy(Exception):
    """Too many detector fits are under way."""


class Resources:
    """What jobs and requests share within one app: named models and data sets (loading a Keras
    model is slow), attack objects and defended classifiers (they keep compiled functions), and
    detectors fitted to a model."""

    def __init__(self, registry, uploads=None, detector_dir: Path | None = None, detector_images: int = 512,
                 detectors_kept: int = 8, ray_address: str | None = None, ray_gpus: float = 0):
        self.registry = registry
        self.uploads = uploads  # uploads.Uploads, or None
        self.detector_dir = Path(detector_dir) if detector_dir else None
        self.detector_images = int(detector_images)  # images a detector is fitted on
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}
        self._data: dict[tuple, object] = {}  # (name, split, image size or None) -> Dataset
        self._detectors: OrderedDict[tuple, object] = OrderedDict()  # least recently used first
        self._ood: dict[tuple, object] = {}  # (model, reference data) -> out-of-distribution check
        self.ray_address = ray_address  # jobs' attacks run on this Ray cluster ("local": here)
        self.ray_gpus = ray_gpus  # GPUs each of its tasks holds
        self.detectors_kept = max(1, int(detectors_kept))  # in memory; the rest reload from disk
        self._fitting: dict[tuple, float] = {}  # detector key -> when its background fit started
        self._fit_failures: dict[tuple, BaseException] = {}
        self._fitter = None  # one background thread fits detectors, one at a time
        self._loading: dict[tuple, threading.Lock] = {}  # one lock per thing being loaded
        self._warmed: set[tuple] = set()

    def model_names(self) -> list[str]:
        up = [m["name"] for m in self.uploads.models()] if self.uploads else []
        return self.registry.names("model") + up

    def dataset_names(self) -> list[str]:
        up = [d["name"] for d in self.uploads.datasets()] if self.uploads else []
        return self.registry.names("dataset") + up

    def splits(self, name: str) -> tuple[str, ...]:
        meta = self.uploads.dataset(name) if self.uploads else None
        if meta is not None:
            return tuple(meta.get("splits") or ())
        return tuple(getattr(self.registry.get("dataset", name), "splits", ()))

    def remember(self, name: str, classifier) -> None:
        with self._lock:
            self._models[name] = classifier

    def classifier(self, name: str):
        def load():
            meta = self.uploads.model(name) if self.uploads else None
            if meta is not None:
                return self.uploads.load_model(meta)
            return self.registry.create("model", name).load()

        return self._once(self._models, name, load)

    def _once(self, table: dict, key, make: Callable):
        """table[key], made by make() the first time. Each key has its own lock, so a slow load
        (a model, a generated data set, a detector's fit) holds up only those waiting for it."""
        with self._lock:
            if key in table:
                return table[key]
            lock = self._loading.setdefault((id(table), key), threading.Lock())
        with lock:
            with self._lock:
                if key in table:
                    return table[key]
            value = make()
            with self._lock:
                table[key] = value
            return value

    def training_data(self, name: str) -> str | None:
        """The named data set a model was trained on: an upload's `data` (models made by a defend
        job) or what a model plugin declares (`dataset`); None when unknown."""
        meta = self.uploads.model(name) if self.uploads else None
        if meta is not None:
            data = meta.get("data")
        else:
            try:
                cls = self.registry.get("model", name)
            except Exception:
                cls = None
            data = getattr(cls, "dataset", None)
        return data if data and data in self.dataset_names() else None

    def class_names(self, name: str, num_classes: int) -> list[str]:
        """The model's class names: its plugin's `class_names`, else those of the data set it was
        trained on (as the model declares it), else "0", "1", ..."""
        meta = self.uploads.model(name) if self.uploads else None
        if meta is not None:
            names = list(meta.get("class_names") or ())
            return names if len(names) == num_classes else [str(i) for i in range(num_classes)]
        try:
            cls = self.registry.get("model", name)
        except Exception:
            cls = None
        names = list(getattr(cls, "class_names", None) or ())
        if len(names) != num_classes:
            data = self.training_data(name)
            names = []
            if data:
                try:
                    names = list(self.dataset(data, "test").class_names)
                except Exception:
                    names = []
        if len(names) != num_classes:
            names = [str(i) for i in range(num_classes)]
        return names

    def dataset(self, name: str, split: str | None, clf=None):
        """A data set's split. An upload of scans of several sizes is resized to `clf`'s input
        (without one, to the size most of them have), as an evaluation from the command line does;
        for a model of volumes, its NIfTI files and DICOM series are read whole onto the model's grid."""
        meta = self.uploads.dataset(name) if self.uploads else None
        size, cut = None, {}
        if meta is not None and clf is not None and len(clf.input_shape) == 4:
            size, cut = tuple(clf.input_shape[:3]), {"slice_axis": "volume"}  # NIfTI files, DICOM series: whole
        elif meta is not None and meta.get("mixed_sizes"):
            size = tuple(clf.input_shape[:2]) if clf is not None else tuple(meta["image_shape"][:2])

        def load():
            if meta is not None:
                from egide.lab.data import load as load_file

                # One set of images (no splits): the job's split (default 'test') is moot.
                return load_file(self.uploads.dataset_path(meta), split=split if meta.get("splits") else None,
                                 image_size=size, **cut)
            return self.registry.create("dataset", name).load(split=split)

        return self._once(self._data, (name, split, size), load)

    def data_source(self, name: str, clf):
        """A data set's splits as an evaluation reads them (kept loaded, like every data set here)."""
        from egide.lab.evaluation.images import DataSource

        return DataSource(name, list(self.splits(name)),
                          lambda split, draw=None: drawn(self.dataset(name, split, clf), draw))

    def reference_images(self, data: str, clf):
        """Held-out images of `data` for `clf`: its val split, else train, else all of it; at most
        `detector_images`, stratified by class. Returns (dataset, split)."""
        splits = self.splits(data)
        split = next((found for s in ("val", "train") if (found := match(s, splits))), None)
        return for_classifier(drawn(self.dataset(data, split, clf), Draw(self.detector_images)), clf), split

    def ood_check(self, model: str, data: str):
        """The out-of-distribution check of `model` against `data` (lab/ood.py), fitted once."""
        def fit():
            from egide.lab.ood import OutOfDistribution

            clf = self.classifier(model)
            ref, split = self.reference_images(data, clf)
            return OutOfDistribution.fit(clf, ref.x, ref.y, {"data": data, "split": split, "images": len(ref)})

        return self._once(self._ood, (model, data), fit)

    def split_size(self, name: str, split: str | None) -> int | None:
        """How many images a split of an uploaded data set holds (None when not recorded)."""
        meta = self.uploads.dataset(name) if self.uploads else None
        if meta is None:
            return None
        sizes = meta.get("images") or {}
        key = match(split, list(sizes)) if split and meta.get("splits") else "all"
        return sizes.get(key) if key else None

    def warm(self, model: str | None, data: str | None, split: str | None) -> None:
        """Load a model and a data set in a background thread (once each), so the first job on
        them does not wait for it: the page calls this for its preselected pair when first served."""
        key = (model, data, split)
        with self._lock:
            if key in self._warmed:
                return
            self._warmed.add(key)

        def load():
            try:
                if model:
                    self.classifier(model)
                if data:
                    self.dataset(data, split if split in self.splits(data) else None)
            except Exception:  # a job on them will report the problem properly
                pass

        threading.Thread(target=load, name="egide-warm", daemon=True).start()

    def ray_config(self):
        """The cluster jobs' attacks run on (EGIDE_RAY_ADDRESS; "local": one started here), or None."""
        if not self.ray_address:
            return None
        from egide.lab.evaluation.pipeline import RayExecutorConfig

        return RayExecutorConfig(ray="" if self.ray_address == "local" else self.ray_address,
                                 gpus_per_task=self.ray_gpus)

    def executor(self):
        """Where jobs' attacks run: the Ray cluster, or here."""
        config = self.ray_config()
        if config is None:
            from egide.lab.evaluation.running import LocalExecutor

            return LocalExecutor()
        from egide.lab.evaluation.ray_executor import RayExecutor

        return RayExecutor(config.ray, gpus_per_task=config.gpus_per_task)

    def attack(self, name: str, params: dict):
        """A new attack object: each job has its own, so the graphs it compiles for the job's
        stoppable model go with the job (a shared one would keep them, and the model, forever)."""
        return self.registry.create("attack", name, **params)

    def detector_or_fit(self, model: str, name: str, params: dict, data: str | None = None):
        """(detector, None) when it is fitted — in memory, or saved under the instance folder —
        else (None, seconds its fit has run), the fit going on in the background: a request never
        waits seconds for one. A fit that failed raises its error once, to the next caller.
        `data`: the data set to fit it on (default: the one the model was trained on)."""
        data = data or self.training_data(model)
        key = (model, _key(name, params), data)
        with self._lock:
            if key in self._detectors:
                self._detectors.move_to_end(key)
                return self._detectors[key], None
            if key in self._fit_failures:
                raise self._fit_failures.pop(key)
            if key in self._fitting:
                return None, time.time() - self._fitting[key]
        det = self._saved_detector(model, name, params, data)
        if det is not None:
            self._keep_detector(key, det)
            return det, None
        with self._lock:
            if key in self._fitting:
                return None, time.time() - self._fitting[key]
            if len(self._fitting) >= MAX_FITS_WAITING:
                raise FitsBusy(f"{len(self._fitting)} detectors are being fitted already; retry later")
            self._fitting[key] = time.time()
            if self._fitter is None:
                from concurrent.futures import ThreadPoolExecutor

                self._fitter = ThreadPoolExecutor(1, thread_name_prefix="egide-detector-fit")
        self._fitter.submit(self._fit_in_background, key, model, name, params, data)
        return None, 0.0

    def _fit_in_background(self, key, model: str, name: str, params: dict, data: str) -> None:
        try:
            self._keep_detector(key, self._fit_detector(model, name, params, data))
        except BaseException as exc:  # kept for the next request, which reports it
            with self._lock:
                self._fit_failures[key] = exc
        finally:
            with self._lock:
                self._fitting.pop(key, None)

    def _keep_detector(self, key, det) -> None:
        with self._lock:
            self._detectors[key] = det
            self._detectors.move_to_end(key)
            while len(self._detectors) > self.detectors_kept:
                self._detectors.popitem(last=False)  # saved on disk: reloaded, not refitted

    def _saved_detector(self, model: str, name: str, params: dict, data: str | None):
        from egide.core.detector import load_detector
        from egide.core.errors import InputError

        path = self.detector_path(model, name, params, data)
        if path is None or not path.is_file():
            return None
        try:
            return load_detector(path, self.classifier(model), self.registry)
        except InputError:  # fitted on other weights (an upload replaced): fit again
            return None

    def detector_path(self, model: str, name: str, params: dict, data: str | None = None) -> Path | None:
        if self.detector_dir is None:
            return None
        fitted_on = "" if data is None or data == self.training_data(model) else f"@{data}"
        digest = hashlib.sha256((_key(name, params) + fitted_on).encode()).hexdigest()[:12]
        return self.detector_dir / model / f"{name}-{digest}.npz"

    def _fit_detector(self, model: str, name: str, params: dict, data: str | None):
        """A detector fitted to `model` on `data` (its val split, else train, else all of it: at most
        `detector_images`, stratified), and saved under the instance folder. A supervised detector
        also needs adversarial examples: PGD at eps 4/255 on the same images. (A saved one was
        looked for before this runs.)"""
        from egide.core.errors import InputError

        clf = self.classifier(model)
        path = self.detector_path(model, name, params, data)
        det = self.registry.create("detector", name, **params)
        if data is None:
            raise InputError(f"the data set {model} was trained on is unknown, so detector {name} "
                             "cannot be fitted to it: name one in reference_data")
        # Held-out images first, as `egide evaluate` does: a threshold set on the images the
        # model was trained on lets through more clean false positives on new scans.
        train, split = self.reference_images(data, clf)
        started = time.perf_counter()
        x_adv = None
        adversarial = None
        if getattr(det, "supervised", False):
            attack = reference_attack(self.registry)
            x_adv = self.attack(attack, {"eps": DETECTOR_EPS}).run(clf, train.x, train.y, seed=0).x_adv
            adversarial = f"{attack} eps={DETECTOR_EPS:.6g}"
        det.fit(clf, train.x, x_adv)
        det.fit_info = {"images": len(train), "data": data, "split": split,
                        "adversarial": adversarial, "seconds": round(time.perf_counter() - started, 3)}
        if path is not None:
            try:
                det.save(path)
            except NotImplementedError:  # a detector that cannot be saved is refitted after a restart
                pass
        return det
