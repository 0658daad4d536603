"""What a job does: load (and cache) the model and data, run an attack or an evaluation, and
write its artifacts into the job's folder. Runs in a worker thread; never touches Flask."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np

from egide.core.report_files import json_safe

EXAMPLES = 6  # clean/adversarial pairs written as PNGs for an attack job


class Resources:
    """Named models and data sets, loaded once per app (loading a Keras model is slow)."""

    def __init__(self, registry, uploads=None):
        self.registry = registry
        self.uploads = uploads  # uploads.Uploads, or None
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}
        self._data: dict[tuple[str, str | None], object] = {}

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
        with self._lock:
            if name not in self._models:
                meta = self.uploads.model(name) if self.uploads else None
                if meta is not None:
                    from egide.core.classifier import Classifier

                    clf = Classifier.load(self.uploads.model_path(meta), clip=(0.0, 1.0))
                    clf.name = name
                    self._models[name] = clf
                else:
                    self._models[name] = self.registry.create("model", name).load()
            return self._models[name]

    def class_names(self, name: str, num_classes: int) -> list[str]:
        """The model's class names: its plugin's `class_names`, else those of the data set it was
        trained on (its `recipe["data"]`, or the demo pairing), else "0", "1", ..."""
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
            recipe = getattr(cls, "recipe", None) or {}
            data = recipe.get("data") or ("brain-tumor-phantom" if name == "brain-tumor-cnn" else None)
            names = []
            if data and data in self.dataset_names():
                try:
                    names = list(self.dataset(data, "test").class_names)
                except Exception:
                    names = []
        if len(names) != num_classes:
            names = [str(i) for i in range(num_classes)]
        return names

    def dataset(self, name: str, split: str | None):
        with self._lock:
            key = (name, split)
            if key not in self._data:
                meta = self.uploads.dataset(name) if self.uploads else None
                if meta is not None:
                    from egide.core.data import load

                    if not meta.get("splits"):
                        split = None  # one set of images: the job's split (default 'test') is moot
                    self._data[key] = load(self.uploads.dataset_path(meta), split=split)
                else:
                    self._data[key] = self.registry.create("dataset", name).load(split=split)
            return self._data[key]


def run_job(resources: Resources, job_dir: Path, job: dict, progress: Callable):
    """Run one stored job; returns (result summary, artifact names)."""
    out = job_dir / job["id"]
    out.mkdir(parents=True, exist_ok=True)
    if job["kind"] == "attack":
        return _attack(resources, out, job["request"], progress)
    return _evaluate(resources, out, job["request"], progress)


def _attack(res: Resources, out: Path, req: dict, progress):
    from egide.core.errors import InputError

    clf = res.classifier(req["model"])
    data = res.dataset(req["data"], req.get("split"))
    if req.get("limit"):
        data = data.take(req["limit"])
    data = data.for_classifier(clf)
    attack = res.registry.create("attack", req["plugin"], **req.get("params", {}))
    target = None
    if attack.targeted:
        k = len(data.class_names)
        spec = req.get("target")
        if spec in (None, "next"):
            target = (data.y + 1) % k
        elif isinstance(spec, int) and 0 <= spec < k:
            target = np.full(len(data.y), spec, np.int64)
        elif isinstance(spec, str) and spec in data.class_names:
            target = np.full(len(data.y), data.class_names.index(spec), np.int64)
        else:
            raise InputError(f"target {spec!r} is not a class index or name of {', '.join(data.class_names)}")
    result = attack.run(clf, data.x, data.y, target=target, batch_size=req.get("batch_size", 128),
                        seed=req.get("seed", 0), progress=progress)
    result.save(out / "adversarial.npz")
    names = list(data.class_names)
    summary = result.summary()
    summary["class_names"] = names
    examples, artifacts = [], ["adversarial.npz"]
    for n, i in enumerate(range(min(EXAMPLES, len(result)))):
        clean_png, adv_png = f"clean-{n}.png", f"adversarial-{n}.png"
        _png(data.x[i], clf.clip, out / clean_png)
        _png(result.x_adv[i], clf.clip, out / adv_png)
        artifacts += [clean_png, adv_png]
        examples.append({
            "index": i,
            "label": names[int(result.y[i])],
            "clean_pred": names[int(result.y_pred[i])],
            "adv_pred": names[int(result.y_pred_adv[i])],
            "success": bool(result.success[i]),
            "linf": float(result.linf[i]),
            "l2": float(result.l2[i]),
            "clean": clean_png,
            "adversarial": adv_png,
        })
    summary["examples"] = examples
    return summary, artifacts


def _evaluate(res: Resources, out: Path, req: dict, progress):
    from egide.core.evaluate import EvaluationConfig, evaluate

    config = EvaluationConfig(**req["config"])
    clf = res.classifier(config.model)
    data = res.dataset(config.data, config.split)
    report = evaluate(config, progress=progress, registry=res.registry, classifier=clf, dataset=data)
    report.write(out)
    headline = {
        "clean_accuracy": report.clean_accuracy,
        "worst_case_robust_accuracy": report.worst_case,
        "runs": [
            {k: r.to_dict()[k] for k in ("attack", "eps", "norm", "robust_accuracy", "success_rate", "purpose")}
            for r in report.runs
        ],
        "sanity_checks": [s.to_dict() for s in report.sanity],
        "images": report.data["images"],
        "seconds": round(report.seconds, 3),
    }
    return json_safe(headline), ["report.html", "report.json"]


def _png(image: np.ndarray, clip, path: Path) -> None:
    from PIL import Image

    lo, hi = clip
    pixels = np.clip((np.asarray(image, np.float32) - lo) / (hi - lo), 0, 1)
    pixels = (pixels * 255 + 0.5).astype(np.uint8)
    if pixels.shape[-1] == 1:
        Image.fromarray(pixels[..., 0]).save(path)
    else:
        Image.fromarray(np.ascontiguousarray(pixels[..., :3])).save(path)
