"""What a job does: run an attack (optionally through a preprocessing defense), an evaluation
or a trainer through the lab's job functions (egide.lab.jobs, the evaluation pipeline), on the
models and data the app's `Resources` keep loaded, and write its artifacts into the job's folder.
Runs in a worker thread; never touches Flask."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from egide.lab.report.card_build import build_card
from egide.lab.report.files import json_safe, write_card, write_figures, write_report
from egide.lab.report.format import detector_fit_text, eps_text
from egide.lab.report.model import eps_key
from egide.lab.report.volume_views import most_perturbed_slice

from .resources import Resources

log = logging.getLogger("egide.web")

EXAMPLES = 6  # clean / adversarial / perturbation triples written as PNGs for an attack job
CHECKPOINT = "checkpoint.npz"  # a trainer's resumable state; a re-run starts from a copy


def run_job(resources: Resources, job_dir: Path, job: dict, progress: Callable):
    """Run one stored job; returns (result summary, artifact names)."""
    out = job_dir / job["id"]
    out.mkdir(parents=True, exist_ok=True)
    kind = job["kind"]
    if kind == "attack":
        return _attack(resources, out, job["request"], progress)
    if kind == "defend":
        return _defend(resources, out, job, progress)
    return _evaluate(resources, out, job["request"], progress)


def _stoppable(clf, progress):
    """A job's own stoppable copy of a shared model: cancelling the job stops it at the next model
    pass, in the middle of an attack's batch, rather than when the batch ends."""
    clf, stop = clf.stoppable()
    when_cancelled = getattr(progress, "when_cancelled", None)
    if when_cancelled is not None:
        when_cancelled(stop)
    return clf


def _config(model, req: dict):
    """The lab's config of a stored job request (the request less its `kind`)."""
    return model(**{k: v for k, v in req.items() if k != "kind"})


def _attack(res: Resources, out: Path, req: dict, progress):
    from egide.core.classifier import softmax
    from egide.lab.jobs import AttackConfig, run_attack

    config = _config(AttackConfig, req)
    clf = _stoppable(res.classifier(config.model), progress)
    outcome = run_attack(config, classifier=clf, source=res.data_source(config.data, clf),
                         registry=res.registry, executor=res.executor(), progress=progress)
    result, data, measured = outcome.result, outcome.data, outcome.measured
    result.save(out / "adversarial.npz")
    names = list(data.class_names)
    summary = outcome.summary
    n_shown = min(EXAMPLES, len(result))
    shown = np.arange(n_shown)
    p_clean = softmax(measured.predict_logits(data.x[shown]))
    p_adv = softmax(measured.predict_logits(result.x_adv[shown]))
    examples, artifacts = [], ["adversarial.npz"]
    for n, i in enumerate(shown):
        files = {"clean": f"clean-{n}.png", "adversarial": f"adversarial-{n}.png",
                 "perturbation": f"perturbation-{n}.png"}
        _png(data.x[i], clf.clip, out / files["clean"])
        _png(result.x_adv[i], clf.clip, out / files["adversarial"])
        amplified = _amplified(result.x_adv[i] - data.x[i])
        _png(amplified, (0.0, 1.0), out / files["perturbation"])
        artifacts += list(files.values())
        worst = None
        if data.x.ndim == 5:  # a volume: also the axial slice the attack changed most, on its own
            k = most_perturbed_slice(result.x_adv[i] - data.x[i])
            worst = {"slice": k + 1, "depth": int(data.x.shape[1]), "clean": f"clean-{n}-slice.png",
                     "adversarial": f"adversarial-{n}-slice.png", "perturbation": f"perturbation-{n}-slice.png"}
            _png(data.x[i, k], clf.clip, out / worst["clean"])
            _png(result.x_adv[i, k], clf.clip, out / worst["adversarial"])
            _png(amplified[k], (0.0, 1.0), out / worst["perturbation"])
            artifacts += [worst["clean"], worst["adversarial"], worst["perturbation"]]
        clean_pred, adv_pred = int(result.y_pred[i]), int(result.y_pred_adv[i])
        examples.append({
            "index": int(i),
            "label": names[int(result.y[i])],
            "clean_pred": names[clean_pred],
            "adv_pred": names[adv_pred],
            "clean_confidence": float(p_clean[n, clean_pred]),
            "adv_confidence": float(p_adv[n, adv_pred]),
            "confidences": {"clean": dict(zip(names, map(float, p_clean[n]))),
                            "adversarial": dict(zip(names, map(float, p_adv[n])))},
            "success": bool(result.success[i]),
            "already_misclassified": bool(result.y_pred[i] != result.y[i]),
            "linf": float(result.linf[i]),
            "l2": float(result.l2[i]),
            "perturbation_scale": float(np.abs(result.x_adv[i] - data.x[i]).max()),
            **files,
            "most_perturbed_slice": worst,
        })
    summary["examples"] = examples
    return json_safe(summary), artifacts


def _amplified(delta: np.ndarray) -> np.ndarray:
    """A perturbation stretched to the full range for display: 0.5 is no change, 0 and 1 the
    largest change down and up in this image."""
    scale = float(np.abs(delta).max())
    if scale == 0.0:
        return np.full_like(delta, 0.5)
    return 0.5 + 0.5 * delta / scale


def _card(report, out: Path) -> list[str]:
    """Every finished evaluation gets its robustness card beside the report (under a second more).
    A card that cannot be made is logged and left out: it never fails the evaluation it describes."""
    try:
        return list(write_card(build_card(json_safe(report.to_dict())), out))
    except Exception:
        log.exception("could not make the robustness card of %s", out)
        return []


def _evaluate(res: Resources, out: Path, req: dict, progress):
    from egide.lab.evaluation.pipeline import EvaluationConfig, evaluate

    config = EvaluationConfig(**req["config"])
    if res.ray_address:  # the server's choice (a client may not set one): attacks on the cluster
        config = config.model_copy(update={"executor": res.ray_config()})
    clf = _stoppable(res.classifier(config.model), progress)
    report = evaluate(config, progress=progress, registry=res.registry, classifier=clf,
                      source=res.data_source(config.data, clf))
    meta = res.uploads.dataset(config.data) if res.uploads else None
    if meta and meta.get("mixed_sizes"):  # resized to the model's input when loaded: the report says so
        report.data["mixed_sizes"] = meta["mixed_sizes"]
    write_report(report, out)
    artifacts = ["report.html", "report.json", *_card(report, out), *write_figures(report, out)]
    defenses, detectors = report.defenses, report.detectors
    headline = {
        "norm": report.config.get("norm", "inf"),
        "clean_accuracy": report.clean_accuracy,
        "worst_case_robust_accuracy": report.worst_case,
        "runs": [
            {k: r.to_dict()[k] for k in ("attack", "eps", "norm", "robust_accuracy", "success_rate", "purpose")}
            for r in report.runs
        ],
        "sanity_checks": [s.to_dict() for s in report.sanity],
        "input_range": report.model.get("input_range"),
        "input_range_source": report.model.get("input_range_source"),
        "images": report.data["images"],
        "subset": report.data.get("subset"),
        "detector_fit": detector_fit_text(report.data["detector_fit"]) if report.data.get("detector_fit") else None,
        "seconds": round(report.seconds, 3),
        "suite": None if report.suite is None else {
            "ran": report.suite.ran, "protocol": report.suite.protocol,
            "runs": [{"eps": r.eps, "eps_text": eps_text(r.eps, report.suite.norm), "robust_accuracy": r.robust_accuracy,
                      "gradient_masking": r.masking} for r in report.suite.runs],
            "notes": [m.note for m in report.suite.members if m.note],
        },
        "defenses": [{"plugin": d.name, "worst_case_robust_accuracy": d.worst_case, "masking": d.masking}
                     for d in defenses],
        "detectors": [{"plugin": d.name, "supervised": d.supervised, "detection_eps": d.detection_eps,
                       "runs": [{"attack": r.attack, "eps": r.eps, "roc_auc": r.auc,
                                 "detection_rate": r.detection_rate} for r in d.runs],
                       "guard": _guard_headline(d.guard)}
                      for d in detectors],
    }
    return json_safe(headline), artifacts


def _guard_headline(guard) -> list[dict] | None:
    """Per budget: guarded robust accuracy against the non-adaptive and the adaptive attacker."""
    if guard is None:
        return None
    falls = guard.falls()
    return [{"eps": p.eps, "eps_text": eps_key(p.eps), "non_adaptive": p.guarded_robust_accuracy,
             "adaptive": a.guarded_robust_accuracy if a else None, "falls": falls.get(p.eps, False),
             "detection_rate": {"non_adaptive": p.detection_rate, "adaptive": a.detection_rate if a else None},
             "through": a.through if a else None, "threshold_fails": guard.threshold_fails()}
            for p, a in guard.pairs()]


def _defend(res: Resources, out: Path, job: dict, progress):
    """Train a defended model with a trainer plugin; save it as model.keras and register it as an
    uploaded model, so it can be picked, attacked and evaluated afterwards."""
    from egide.lab.jobs import DefendConfig, train_defended
    from egide.lab.training import save_model

    config = _config(DefendConfig, job["request"])
    clf = res.classifier(config.model)
    outcome = train_defended(config, classifier=clf, source=res.data_source(config.data, clf),
                             registry=res.registry, checkpoint=out / CHECKPOINT, progress=progress)
    trainer, val = outcome.trainer, outcome.val
    model_file = save_model(outcome.trained.model, out / "model.keras")  # atomic, no optimizer state
    (out / CHECKPOINT).unlink(missing_ok=True)  # done: nothing left to resume
    names = res.class_names(config.model, clf.num_classes)
    meta, registered = res.uploads.add_trained_model(
        model_file, title=f"{trainer.title} of {config.model} (job {job['id']})",
        data=config.data, class_names=names, made_by={"job": job["id"], **trainer.config(),
                                                      "base_model": config.model})
    res.remember(meta["name"], registered)
    val_acc = float(np.mean(registered.predict(val.x) == val.y)) if val is not None else None
    summary = {"defense": trainer.config(), "base_model": config.model, "data": config.data,
               "model": meta["name"], "model_title": meta["title"], "train_images": len(outcome.train),
               "val_accuracy": val_acc, "seconds": round(outcome.seconds, 3)}
    return json_safe(summary), ["model.keras"]


def _png(image: np.ndarray, clip, path: Path) -> None:
    from PIL import Image

    from egide.lab.report.volume_views import as_picture

    lo, hi = clip
    pixels = np.clip((as_picture(np.asarray(image, np.float32)) - lo) / (hi - lo), 0, 1)
    pixels = (pixels * 255 + 0.5).astype(np.uint8)
    if pixels.shape[-1] == 1:
        Image.fromarray(pixels[..., 0]).save(path)
    else:
        Image.fromarray(np.ascontiguousarray(pixels[..., :3])).save(path)
