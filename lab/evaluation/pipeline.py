"""The evaluation pipeline: attacks x epsilons on one model and data set -> a Report.

    config = EvaluationConfig(model="brain-tumor-cnn", data="brain-tumor-phantom", eps=[4/255])
    report = evaluate(config, progress=callback)
    write_report(report, "out/")    # report.json (every number) and report.html (for people)

The configuration is one pydantic model: the CLI's flags, its `--config` JSON file and the JSON
API all build the same structure. Robust accuracy is reported per attack and per epsilon, and
as the per-sample worst case over the L-inf attacks (a sample counts as robust only if no
attack broke it). Sanity checks flag the signs of gradient masking.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from egide.core import __version__
from egide.core.classifier import Classifier, softmax
from egide.core.errors import InputError, ParameterError
from egide.core.params import Budget, NormWithL1
from egide.core.registry import Registry
from egide.core.registry import registry as default_registry
from egide.core.results import AttackResult
from egide.lab import services
from egide.lab.data.fitting import for_classifier
from egide.lab.data.sampling import Sampling
from egide.lab.evaluation.defenses import defense_classifier, evaluate_defense
from egide.lab.evaluation import evidence
from egide.lab.evaluation.detectors import check_detector, evaluate_detectors
from egide.lab.evaluation.images import (
    DataSource,
    EvaluationImages,
    choose_images,
    in_memory_source,
    local_source,
)
from egide.lab.evaluation.running import (
    Counter,
    EvaluationProgress,
    LocalExecutor,
    attack_run,
    per_class,
    plan_attack,
    run_jobs,
)
from egide.lab.evaluation.sanity import black_box_check, sanity_checks
from egide.lab.evaluation.setup_check import overridden, setup_problem
from egide.lab.evaluation.suite import PROTOCOLS, run_suite
from egide.lab.report.model import (
    AttackRun,
    GalleryItem,
    MinimalPerturbations,
    Report,
    eps_key,
)

DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
# Without eps given: budgets in each norm's own unit. L2 and L1 sizes grow with the image (for a
# 64x64 scan, L2 0.5 is about AutoAttack's CIFAR-10 budget; L1 8 about half its 12 per 3,072 pixels).
DEFAULT_EPS_BY_NORM = {"inf": DEFAULT_EPS, "2": (0.25, 0.5, 1.0), "1": (4.0, 8.0, 16.0)}
NORM_NAMES = {"inf": "L-inf", "2": "L2", "1": "L1"}
# Bounds of one evaluation, so a config (or an API request) states its cost up front.
MAX_SEED = 2**32 - 1
MAX_BUDGETS = 32
MAX_PLUGINS = 16  # attacks, defenses, detectors: each list
CONVERSION_CHECK_IMAGES = 8  # evaluated images a converted model is checked on against its source


class AttackSpec(BaseModel):
    """One attack of an evaluation: a plugin name and its parameters (eps comes from the list)."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(max_length=128, description="Attack plugin name, e.g. 'pgd'")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters other than eps")


class DefenseSpec(BaseModel):
    """A preprocessing defense to evaluate: its plugin name and parameters."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(max_length=128, description="Defense plugin name, e.g. 'jpeg'")
    params: dict[str, Any] = Field(default_factory=dict, description="The defense's parameters")


class DetectorSpec(BaseModel):
    """A detector to evaluate: its plugin name and parameters."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(max_length=128, description="Detector plugin name, e.g. 'mahalanobis'")
    params: dict[str, Any] = Field(default_factory=dict, description="The detector's parameters")


class RayExecutorConfig(BaseModel):
    """A Ray cluster to run the attacks on, and what each task (one batch of images) takes."""

    model_config = ConfigDict(extra="forbid")
    ray: str = Field(max_length=512, description="The cluster's address, e.g. 'head-node:6379'; "
                     "empty: start a local cluster on this machine")
    cpus_per_task: float = Field(1, gt=0, le=256, description="CPUs a task holds; TensorFlow in "
                                 "the task uses as many threads")
    gpus_per_task: float = Field(0, ge=0, le=16, description="GPUs a task holds (a fraction shares "
                                 "one GPU between tasks, e.g. 0.25); 0: the attacks run on CPUs")


def default_attacks(norm: str = "inf") -> list[AttackSpec]:
    """The standard evaluation: every installed attack that declares its `evaluation` params. In
    another norm, those with a version for it (minimal-perturbation ones that minimise it), and
    when none of them has a budget in it, every iterative attack that does (l1-APGD for L1)."""
    from egide.lab.choices import norms_of

    reg = default_registry()
    standard = services.standard_attacks(reg)
    if norm == "inf":
        return [AttackSpec(plugin=name, params=params) for name, params in standard]

    def fits(cls):
        return norm in norms_of(cls) if cls.budget == "fixed" else str(cls.minimizes) == norm

    chosen = [(name, params) for name, params in standard if fits(reg.get("attack", name))]
    if not any(reg.get("attack", name).budget == "fixed" for name, _ in chosen):
        chosen = [(cls.name, {}) for cls in reg.plugins("attack")
                  if cls.budget == "fixed" and cls.iterative and norm in norms_of(cls)] + chosen
    return [AttackSpec(plugin=name, params=params) for name, params in chosen]


class EvaluationConfig(BaseModel):
    """What to evaluate. The same structure for `egide evaluate --config` and the JSON API."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(
        default_factory=lambda: services.default_model(default_registry()),
        description="Named model or .keras/.h5 path (default: the installed demo model)",
    )
    data: str = Field(
        default_factory=lambda given: services.default_data(default_registry(), given.get("model")),
        description="Named data set, .npz or image folder (default: the data set the model "
        "declares, else the demo's)",
    )
    split: str | None = Field("test", description="Split of the data set to evaluate on ('training', "
                              "'Testing', 'valid'... name the same splits; 'all' reads every split)")
    window: tuple[float, float] | None = Field(
        None, description="DICOM: the VOI window (centre, width) to read scans with, instead of the one "
        "each file stores (e.g. [40, 400] for a CT brain window)")
    slice_axis: Literal["axial", "coronal", "sagittal"] = Field(
        "axial", description="NIfTI: the axis volumes are cut along into images")
    skip_empty_slices: bool = Field(False, description="NIfTI: drop slices without tissue")
    norm: NormWithL1 = Field(
        "inf", description="The threat model: the norm of every budget in eps, L-inf ('inf'), L2 ('2') or L1 "
        "('1'). Attacks without a norm of their own run in it (one without a version for it is refused), "
        "and the worst case and the suite are measured in it")
    attacks: list[AttackSpec] = Field(default_factory=lambda given: default_attacks(given.get("norm", "inf")),
                                      min_length=1, max_length=MAX_PLUGINS)
    eps: list[Budget] = Field(
        max_length=MAX_BUDGETS,  # at least one: the validator says so, with an example
        default_factory=lambda given: list(DEFAULT_EPS_BY_NORM[given.get("norm", "inf")]),
        description="Budgets in the norm's unit (L-inf: fractions of the input range), numbers or fractions, "
        'e.g. ["1/255", "2/255", 0.0157, "8/255"]; default: 1/255..8/255 (L-inf), 0.25, 0.5, 1 (L2), 4, 8, 16 (L1)',
    )
    limit: int | None = Field(None, ge=1, description="Evaluate N images of the split, drawn as `sampling` "
                              "says; empty: all of them")
    sampling: Sampling = Field(
        "stratified", description="How `limit` draws its images: 'stratified' (each class in proportion, "
        "seeded), 'random' (seeded) or 'first' (read order: classes by name, files by name)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Random seed of every attack")
    batch_size: int | None = Field(
        None, ge=1, le=4096,
        description="Images per attack batch; empty (None): as many as the model's memory footprint allows",
    )
    input_range: tuple[float, float] | None = Field(
        None, validation_alias=AliasChoices("input_range", "clip"),
        description="Pixel range the model expects, e.g. [0, 255]; empty: read from the model (a "
        "leading Rescaling/Normalization layer), else [0, 1]. Images and budgets stay in [0, 1] "
        "units: 4/255 is 4/255 of this range",
    )
    normalize: tuple[list[float], list[float]] | None = Field(
        None, description="ONNX models: the per-channel (v - mean) / std the model expects after its input "
        "range, as [means, stds] (e.g. [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]); applied inside the "
        "classifier, so images and budgets stay in [0, 1] units")
    gallery: int = Field(8, ge=0, le=64, description="Examples shown in the report's gallery")
    sanity_checks: bool = Field(True, description="Run the gradient-masking sanity checks")
    stop_on_broken_setup: bool = Field(
        True, description="Stop before any attack when the clean predictions look broken (one class for "
        "nearly every image, or chance-level accuracy): a wrong input range, channel or class order")
    defenses: list[DefenseSpec] = Field(
        default_factory=list, max_length=MAX_PLUGINS,
        description="Preprocessing defenses, each attacked non-adaptively and adaptively (BPDA/EOT)",
    )
    eot_samples: int = Field(
        8, ge=1, le=256, description="Draws averaged by EOT when attacking a randomized defense"
    )
    detectors: list[DetectorSpec] = Field(
        default_factory=list, max_length=MAX_PLUGINS, description="Detectors to fit and score (ROC AUC per attack and eps)"
    )
    executor: RayExecutorConfig | None = Field(
        None, description='Where attacks run: {"ray": "ADDRESS"} (empty address: a local Ray '
        "cluster) runs every batch of the attacks (suite stages, defenses' and detectors' "
        "attacks included) as a Ray task, with the same per-image results as a local run with "
        "the same batch_size; empty: here")
    adaptive_detectors: bool = Field(
        True, description="Also attack each detector adaptively (an attacker who knows it), at "
        "every eps: guarded robust accuracy without and with that knowledge")
    guard_attack_steps: int = Field(
        50, ge=1, le=10_000, description="Steps of the detector-aware attack (and of the PGD run "
        "when the evaluation made no L-inf examples)")
    detector_fit_split: str | None = Field(
        None, max_length=128, description="Split the detectors are fitted on: held-out images, so the "
        "threshold chosen for a false-positive rate holds on new images (a model is over-confident on "
        "the images it was trained on). Empty: the data's validation split, else a seeded stratified "
        "part of the evaluated split, held out from the evaluation")
    detector_fit_limit: int | None = Field(
        1024, ge=16, description="Fit detectors on at most this many images of that split"
    )
    suite: Literal["standard", "fast", "quick", "plus", "rand"] | None = Field(
        None,
        description="A reference-grade protocol (AutoAttack's): standard = APGD-CE, APGD-T, FAB-T, "
        "Square; fast = APGD-CE (8 restarts under L1), APGD-T on MALT's 3 nearest targets with a second "
        "start for the points left near a boundary, Square with 1,000 queries; quick = APGD-CE, APGD-T; plus; "
        "rand (EOT, for randomized models). Its per-point worst case is the report's headline",
    )
    negative_class: str | None = Field(
        None, max_length=128, description="The class that means 'no finding' (e.g. 'notumor'): the "
        "robustness card counts an attack's flips into it as missed findings and out of it as false "
        "alarms. Empty: the data set's declaration, else a binary model's class 0, else none")
    detection_eps: Budget | None = Field(
        None, gt=0, le=1,
        description="Budget of the adversarial examples supervised detectors are fitted on, and "
        "of the transfer table (default: 4/255 if listed in eps, else the middle epsilon)",
    )

    @field_validator("eps")
    @classmethod
    def _eps_in_range(cls, eps: list[float], info: ValidationInfo) -> list[float]:
        if not eps:
            raise ValueError("give at least one epsilon, e.g. [0.0157] for 4/255")
        linf = info.data.get("norm", "inf") == "inf"  # norm is declared (so validated) before eps
        for value in eps:
            if linf and not 0 < value <= 1:
                raise ValueError(f"epsilon {value:g} is outside (0, 1]; L-inf epsilons are in input units "
                                 "(4/255 = 0.0157 for images in [0, 1]); for an L2 or L1 budget set norm")
            if not value > 0:
                raise ValueError(f"epsilon {value:g} must be positive")
        return sorted(set(eps))

    @model_validator(mode="after")
    def _distinct_plugins(self):
        if self.norm != "inf" and self.detectors:
            raise ValueError("detectors are evaluated against L-inf attacks only (the guard's adaptive attack "
                             "is L-inf): set norm to 'inf', or evaluate the detectors in a separate run")
        for what, specs in (("attack", self.attacks), ("defense", self.defenses),
                            ("detector", self.detectors)):
            names = [s.plugin for s in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"each {what} may appear once; got {names}")
        if self.detection_eps is not None and not any(
                math.isclose(self.detection_eps, e) for e in self.eps):
            raise ValueError(
                f"detection_eps {self.detection_eps:g} must be one of the evaluated eps {self.eps}")
        return self

    def detection_budget(self) -> float:
        """The epsilon supervised detectors are fitted at (and the transfer table is shown at)."""
        if self.detection_eps is not None:
            return self.detection_eps
        for eps in self.eps:
            if math.isclose(eps, 4 / 255):
                return eps
        return self.eps[len(self.eps) // 2]


def evaluate(
    config: EvaluationConfig | dict,
    *,
    progress: EvaluationProgress | None = None,
    registry: Registry | None = None,
    classifier: Classifier | None = None,
    dataset=None,
    detector_dataset=None,
    source: DataSource | None = None,
) -> Report:
    """Run every attack at every epsilon on the model and data of `config`; then each defense
    (non-adaptive and adaptive) and each detector (ROC per attack and epsilon).

    `classifier`, `dataset` (the whole evaluated split; `limit` draws from it) and
    `detector_dataset` (the images detectors are fitted on; without it they are held out of
    `dataset`) replace loading them from `config` when the caller already holds them (a
    notebook, a test); `source` gives the splits of a data set a server keeps loaded.

    The stages, in order: the images; the clean predictions (and the setup check); the plan;
    the attacks; the suite; the defenses; the detectors; the findings (worst case, minimal
    perturbations, sanity checks, gallery); the report.
    """
    started = time.perf_counter()
    if isinstance(config, dict):
        config = EvaluationConfig(**config)
    reg = registry or default_registry()
    attacks = [check_attack(reg, spec, config.norm) for spec in config.attacks]
    clf = classifier or Classifier.load(config.model, input_range=config.input_range, normalize=config.normalize)
    if source is None:
        source = (in_memory_source(config.data, config.split, dataset, detector_dataset)
                  if dataset is not None else local_source(config.data, clf, reg, window=config.window,
                                                            slice_axis=config.slice_axis,
                                                            skip_empty_slices=config.skip_empty_slices))
    images = _images(config, source, clf)
    x, y, names = images.x, images.y, images.names
    negative = evidence.negative_class(config.negative_class, _dataset_declares(reg, config.data, "negative_class"),
                                       names)
    conversion = _conversion_checked(reg, clf, x)
    clean_pred, setup = _clean_predictions(config, clf, images)
    clean_ok = clean_pred == y

    plan = _plan(config, attacks, reg)
    defended = [defense_classifier(reg, spec, clf) for spec in config.defenses]
    detectors = [check_detector(reg, spec) for spec in config.detectors]
    evaluation_plan = [p for p in plan if p[3] == "evaluation"]
    counter = Counter(_work(config, plan, evaluation_plan, defended, detectors, len(x)), progress)
    executor = _executor(config)

    runs, adversarials = _attack_runs(plan, clf, images, clean_ok, config, counter, executor)
    suite = (run_suite(reg, config.suite, clf, clf, x, y, clean_ok, config.eps, config.norm, config, counter,
                       executor)
             if config.suite else None)
    defense_reports = [
        evaluate_defense(d, evaluation_plan, x, y, names, config, counter, registry=reg, executor=executor)
        for d in defended
    ]
    detector_reports = []
    if detectors:
        fit = for_classifier(images.chosen.fit, clf)
        detector_reports = evaluate_detectors(detectors, reg, clf, x, y, clean_ok, adversarials, attacks, fit.x,
                                              fit.y, config, counter, executor)

    evaluated = [r for r in runs if r.purpose == "evaluation"]
    worst, worst_per_class = _worst_case(evaluated, config.eps, config.norm, clean_ok, y, names, suite)
    identity = evidence.fingerprints(clf.source_file, x, y)
    return Report(
        config=config.model_dump(mode="json"),
        environment=_environment(attacks, defense_reports, detector_reports),
        model={**clf.describe(), "sha256": identity["model_sha256"], "conversion": conversion},
        data={**images.describe(config), "images_sha256": identity["images_sha256"],
              "labels_sha256": identity["labels_sha256"], "negative_class": negative,
              "synthetic": bool(_dataset_declares(reg, config.data, "synthetic"))},
        clean_accuracy=float(clean_ok.mean()),
        clean_per_class=per_class(clean_ok, y, names),
        runs=runs,
        worst_case=worst,
        worst_case_per_class=worst_per_class,
        minimal=_minimal(reg, evaluated, clean_ok),
        sanity=_sanity(config, attacks, runs, clean_ok, suite, setup),
        gallery=_gallery(evaluated, adversarials, clf, x, y, names, clean_ok, config.gallery, config.norm),
        seconds=time.perf_counter() - started,
        defenses=defense_reports,
        detectors=detector_reports,
        suite=suite,
        per_image={"labels": [int(v) for v in y], "clean_pred": [int(v) for v in clean_pred],
                   "worst_case_pred": evidence.worst_case_predictions(evaluated, suite, config.eps, config.norm,
                                                                      clean_pred, y)},
    )


# ---- the stages ----------------------------------------------------------------------------
@dataclass
class _Images:
    """The evaluated images, fitted to the model, and where they came from."""

    chosen: EvaluationImages
    x: np.ndarray
    y: np.ndarray
    names: list[str]
    resized_from: list[int] | None  # images from files, resized to the model's input
    mixed_sizes: str | None  # scans of several sizes, each resized to the model's input

    def describe(self, config) -> dict:
        return {
            "source": config.data,
            "split": config.split,
            "images": len(self.x),
            "class_names": self.names,
            "class_counts": {n: int((self.y == i).sum()) for i, n in enumerate(self.names)},
            "resized_from": self.resized_from,
            "mixed_sizes": self.mixed_sizes,
            "subset": self.chosen.subset.to_dict() if self.chosen.subset else None,
            "detector_fit": self.chosen.fit_origin,
        }


def evaluated_images(config: EvaluationConfig | dict, clf: Classifier, registry: Registry | None = None) -> _Images:
    """The images an evaluation of `config` takes, loaded again from disk (a certification of a
    finished evaluation; the report's image hash tells whether they are still the same)."""
    config = config if isinstance(config, EvaluationConfig) else EvaluationConfig(**config)
    source = local_source(config.data, clf, registry or default_registry(), window=config.window,
                          slice_axis=config.slice_axis, skip_empty_slices=config.skip_empty_slices)
    return _images(config, source, clf)


def _images(config: EvaluationConfig, source: DataSource, clf: Classifier) -> _Images:
    chosen = choose_images(config, source, needs_fit=bool(config.detectors))
    data = for_classifier(chosen.data, clf)
    resized_from = list(chosen.data.image_shape) if data.image_shape != chosen.data.image_shape else None
    return _Images(chosen, data.x, data.y, list(data.class_names), resized_from,
                   source.mixed_sizes[0] if source.mixed_sizes else None)


def _clean_predictions(config: EvaluationConfig, clf: Classifier, images: _Images):
    """(the model's class for each image, the setup problem its predictions show or None)."""
    clean_pred = clf.predict_logits(images.x, batch_size=config.batch_size).argmax(1)
    setup = setup_problem(clf, clean_pred, images.y, images.names)
    if setup and config.stop_on_broken_setup:
        raise InputError(setup)
    return clean_pred, setup


def _conversion_checked(reg: Registry, clf: Classifier, x) -> dict | None:
    """A converted model (ONNX) compared once more with its source, on the first evaluated images:
    a mismatch stops the evaluation before any attack; the report keeps both checks."""
    if clf.conversion is None:
        return None
    on_images = reg.create("model-format", clf.conversion["format"]).check(clf, x[:CONVERSION_CHECK_IMAGES])
    return {**clf.conversion, "on_evaluated_images": on_images}


def _dataset_declares(reg: Registry, data: str, attribute: str):
    """What a named data set declares about itself (its "no finding" class, that it is generated);
    None for files and folders, which declare nothing."""
    return getattr(reg.get("dataset", data), attribute, None) if data in reg.names("dataset") else None


def _plan(config: EvaluationConfig, attacks, reg: Registry) -> list[tuple]:
    """(attack class, spec, eps, purpose) of every run: each attack at each of its budgets, and
    the sanity run."""
    plan = [(cls, spec, eps, "evaluation") for cls, spec in attacks for eps in _budgets(cls, config.eps)]
    iterative = [cls for cls, _ in attacks if cls.iterative]
    if config.sanity_checks and iterative:
        # L-inf eps 1 is the whole input box (unbounded in every norm): an iterative attack, at
        # the full strength it declares, must then break nearly every sample. One whose step
        # grows with the budget (APGD's first step is 2 eps) only visits the box's corners there,
        # so an attack with a step rule of its own (PGD, BIM, MIM) checks the gradients instead.
        fixed_step = [cls for cls in [*iterative, *reg.plugins("attack")]
                      if cls.iterative and "step_size" in cls.Params.model_fields]
        cls = (fixed_step or iterative)[0]
        plan.append((cls, AttackSpec(plugin=cls.name, params=dict(cls.full_strength)), 1.0, "sanity"))
    return plan


def _work(config: EvaluationConfig, plan, evaluation_plan, defended, detectors, n: int) -> int:
    """Images the whole evaluation will process: what its progress counts to."""
    suite_work = len(PROTOCOLS[config.suite]) * len(config.eps) * n if config.suite else 0
    guard_work = len(detectors) * len(config.eps) * n if config.adaptive_detectors else 0
    return (len(plan) * n + 2 * len(defended) * len(evaluation_plan) * n
            + suite_work * (1 + len(defended)) + guard_work)


def _attack_runs(plan, clf, images: _Images, clean_ok, config, counter, executor):
    """Every planned run, as one group (on Ray, all their batches at once); and the adversarial
    examples of the evaluation's runs, by (attack, eps), for the detectors and the gallery."""
    jobs = [plan_attack(cls, spec, eps, clf, clf, images.x, images.y, purpose) for cls, spec, eps, purpose in plan]
    results = run_jobs(executor, jobs, config, counter)
    runs: list[AttackRun] = [attack_run(job, result, clean_ok, images.names) for job, result in zip(jobs, results)]
    adversarials: dict[tuple[str, float | None], AttackResult] = {
        (job.attack.name, job.eps): result for job, result in zip(jobs, results) if job.purpose == "evaluation"}
    return runs, adversarials


def _minimal(reg: Registry, evaluated, clean_ok) -> list[MinimalPerturbations]:
    """Minimal-perturbation attacks (budget "minimal"): the size each needed to break an image."""
    return [MinimalPerturbations(r.attack, reg.get("attack", r.attack).title, r.norm,
                                 [float(v) for v in r.size[~r.robust & clean_ok]])
            for r in evaluated if r.eps is None]


def _sanity(config: EvaluationConfig, attacks, runs, clean_ok, suite, setup) -> list:
    evaluated = [r for r in runs if r.purpose == "evaluation"]
    unbounded = [r for r in runs if r.purpose == "sanity"]
    kinds = {"single_step": {cls.name for cls, _ in attacks if cls.single_step},
             "iterative": {cls.name for cls, _ in attacks if cls.iterative}}
    sanity = (sanity_checks(evaluated, unbounded, config.eps, float(clean_ok.mean()), kinds)
              if config.sanity_checks else [])
    if suite is not None:
        sanity.append(black_box_check(suite))
    if setup:
        sanity.insert(0, overridden(setup))
    return sanity


def _environment(attacks, defense_reports, detector_reports) -> dict:
    """What the result was computed with: versions of egide, its stack and every plugin."""
    import keras
    import tensorflow as tf

    return {
        "egide": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "plugins": {
            **{cls.name: cls.version for cls, _ in attacks},
            **{d.name: d.config["version"] for d in defense_reports},
            **{d.name: d.config["version"] for d in detector_reports},
        },
    }


# ---- planning -------------------------------------------------------------------------------
def _executor(config: EvaluationConfig):
    """Where the attacks run: here, or on the Ray cluster the configuration names."""
    if not config.executor:
        return LocalExecutor()
    from egide.lab.evaluation.ray_executor import RayExecutor

    return RayExecutor(config.executor.ray, gpus_per_task=config.executor.gpus_per_task,
                       cpus_per_task=config.executor.cpus_per_task)


def check_attack(reg: Registry, spec: AttackSpec, norm: str = "inf"):
    """(attack class, spec) of one evaluated attack, its parameters checked; a fixed-budget attack
    without a norm of its own is given the evaluation's (refused when it has no version for it)."""
    from egide.lab.choices import norms_of

    cls = reg.get("attack", spec.plugin)
    if "eps" in spec.params:
        raise ParameterError(
            f"attack '{spec.plugin}': give epsilons in the evaluation's `eps` list, not in params"
        )
    if "targeted" in spec.params and spec.params["targeted"]:
        raise ParameterError(f"attack '{spec.plugin}': evaluations run untargeted attacks")
    if cls.budget == "fixed" and "norm" not in spec.params and norm != "inf":
        if norm not in norms_of(cls):
            having = [c.name for c in reg.plugins("attack") if c.budget == "fixed" and norm in norms_of(c)]
            raise ParameterError(f"attack '{spec.plugin}' has no {NORM_NAMES[norm]} version; attacks "
                                 f"that have one: {', '.join(having) or 'none installed'}")
        spec = spec.model_copy(update={"params": {**spec.params, "norm": norm}})
    probe = dict(spec.params)
    if cls.budget == "fixed":
        probe["eps"] = DEFAULT_EPS_BY_NORM[str(probe.get("norm", "inf"))][0]
    cls.validate_params(probe)  # fail before any work starts
    return cls, spec


def _budgets(cls, eps_list):
    return list(eps_list) if cls.budget == "fixed" else [None]


# ---- aggregation ----------------------------------------------------------------------------
def _worst_case(runs, eps_list, norm, clean_ok, y, names, suite=None):
    """Per epsilon, the share of images no attack in the norm (nor the suite) broke: per point."""
    worst, by_class = {}, {n: {} for n in names}
    for eps in eps_list:
        at_eps = [r.robust for r in runs
                  if r.eps is not None and math.isclose(r.eps, eps) and r.norm == norm]
        if suite is not None and suite.at(eps) is not None:
            at_eps.append(suite.at(eps).robust)
        if not at_eps:
            continue
        robust = clean_ok.copy()
        for r in at_eps:
            robust &= r
        worst[eps_key(eps)] = float(robust.mean())
        for name, acc in per_class(robust, y, names).items():
            by_class[name][eps_key(eps)] = acc
    return worst, by_class


def _gallery(runs, adversarials, clf, x, y, names, clean_ok, count, norm="inf") -> list[GalleryItem]:
    """Correctly classified examples, one class after another, under the strongest run in the
    norm at the largest epsilon (the one with the lowest robust accuracy)."""
    linf = [r for r in runs if r.eps is not None and r.norm == norm]
    if not count or not linf:
        return []
    top = max(r.eps for r in linf)
    strongest = min((r for r in linf if r.eps == top), key=lambda r: r.robust_accuracy)
    x_adv = adversarials[(strongest.attack, strongest.eps)].x_adv
    chosen: list[int] = []
    per_class = [list(np.flatnonzero((y == i) & clean_ok)) for i in range(len(names))]
    while len(chosen) < count and any(per_class):
        for idx in per_class:
            if idx and len(chosen) < count:
                chosen.append(int(idx.pop(0)))
    if not chosen:
        return []
    p_clean = softmax(clf.predict_logits(x[chosen]))
    p_adv = softmax(clf.predict_logits(x_adv[chosen]))
    return [
        GalleryItem(
            index=i,
            label=names[y[i]],
            clean=x[i],
            adversarial=x_adv[i],
            clean_pred=names[int(pc.argmax())],
            clean_confidence=float(pc.max()),
            adv_pred=names[int(pa.argmax())],
            adv_confidence=float(pa.max()),
            attack=strongest.attack,
            eps=float(strongest.eps),
        )
        for i, pc, pa in zip(chosen, p_clean, p_adv)
    ]
