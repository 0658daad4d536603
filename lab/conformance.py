"""The conformance suite every plugin must pass (`egide.testing`).

    from egide.testing import check_plugin, plugin_checks
    check_plugin(MyAttack)                       # runs every check, raises on the first failure
    @pytest.mark.parametrize("check", plugin_checks(MyAttack), ids=str)
    def test_my_attack(check): check()           # one pytest test per check

Checks: the declaration follows the contract; the parameter schema is valid JSON Schema and
renders as a form; the defaults validate; unknown parameters are refused; and behaviour on a
small real Keras model: results are deterministic under a seed, shape/dtype/range are kept,
and an attack's budget holds in every norm its `norm` parameter takes (L-inf, L2, L1), with its
work counts (`steps`, `queries`) cut to 20, since none of that depends on how long it searches;
a preprocessor stays in range, replays under a seed, and its
adaptive view is the same defense with a usable gradient; a detector scores the same after
save and load, refuses to score before fit, and refuses a false-positive rate outside (0, 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from egide.core.attack import Attack
from egide.core.classifier import Classifier
from egide.core.defense import Defense
from egide.core.detector import Detector
from egide.core.errors import EgideError, ParameterError
from egide.core.plugin import Plugin
from egide.core.preprocess import Preprocessor
from egide.core.sources import DatasetSource, ModelSource
from egide.lab.choices import norms_of
from egide.lab.schema import form_fields

BUDGET_TOLERANCE = 1e-5


class ConformanceError(AssertionError):
    """A plugin broke the plugin contract; the message names the plugin and the check."""


@dataclass(frozen=True)
class Check:
    plugin: type[Plugin]
    name: str
    run: Callable[[], None]

    def __call__(self) -> None:
        try:
            self.run()
        except ConformanceError:
            raise
        except Exception as exc:
            raise ConformanceError(
                f"{self.plugin.kind} '{self.plugin.name}' failed check '{self.name}': "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def __str__(self) -> str:
        return f"{self.plugin.kind}-{self.plugin.name}-{self.name}"


def plugin_checks(cls: type[Plugin], data: tuple | None = None) -> list[Check]:
    """The checks for one plugin class. `data` = (clf, x, y) to use your own model and images."""

    def fixture():
        return data if data is not None else default_fixture()

    checks = [
        ("declaration", lambda: cls.check_declaration()),
        ("schema-is-json-schema", lambda: _check_json_schema(cls)),
        ("schema-renders", lambda: _require(form_fields(cls.schema()) is not None, "no fields")),
        ("defaults-validate", lambda: _check_defaults(cls)),
        ("unknown-params-refused", lambda: _check_unknown_refused(cls)),
    ]
    if issubclass(cls, Attack):
        checks += [
            ("attack-keeps-shape-dtype-range", lambda: _check_attack_output(cls, *fixture())),
            ("attack-deterministic", lambda: _check_attack_deterministic(cls, *fixture())),
            ("attack-budget", lambda: _check_attack_budget(cls, *fixture())),
        ]
        if "targeted" in cls.Params.model_fields:
            checks.append(("attack-targeted-runs", lambda: _check_attack_targeted(cls, *fixture())))
    elif issubclass(cls, Defense) and not cls.needs_training_data:
        checks.append(("defense-keeps-classifier", lambda: _check_defense(cls, *fixture())))
    elif issubclass(cls, Detector):
        checks += [
            ("detector-scores", lambda: _check_detector(cls, *fixture())),
            ("detector-save-load", lambda: _check_detector_save_load(cls, *fixture())),
            ("detector-unfitted-refused", lambda: _check_detector_unfitted(cls, *fixture())),
            ("detector-fpr-validated", lambda: _check_detector_fpr(cls)),
        ]
        if cls.score_gradient is not None:
            checks.append(("detector-differentiable-score",
                           lambda: _check_differentiable_score(cls, *fixture())))
    elif issubclass(cls, DatasetSource):
        checks.append(("dataset-loads-splits", lambda: _check_dataset(cls)))
    elif issubclass(cls, ModelSource):
        checks.append(("model-loads", lambda: _check_model(cls)))
    return [Check(cls, name, fn) for name, fn in checks]


def check_plugin(cls: type[Plugin], data: tuple | None = None) -> list[str]:
    """Run every check; return their names, or raise ConformanceError on the first failure."""
    done = []
    for check in plugin_checks(cls, data):
        check()
        done.append(check.name)
    return done


# ---- the default fixture: a tiny real Keras model on random images ------------------------
@functools.lru_cache(maxsize=1)
def default_fixture() -> tuple[Classifier, np.ndarray, np.ndarray]:
    """A small untrained CNN (fixed seed) on 8x8x1 images in [0, 1], with 3 classes."""
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ],
        name="conformance_cnn",
    )
    rng = np.random.default_rng(0)
    # Two whole batches of 5: a part-batch would make every attack trace its graph twice.
    x = rng.uniform(0.0, 1.0, (10, 8, 8, 1)).astype(np.float32)
    clf = Classifier.from_keras(model, clip=(0.0, 1.0))
    return clf, x, clf.predict(x)  # labels = predictions, so every image starts correct


# ---- checks ---------------------------------------------------------------------------
def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


def _check_json_schema(cls: type[Plugin]) -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(cls.schema())


def _check_defaults(cls: type[Plugin]) -> None:
    from jsonschema import Draft202012Validator

    plugin = cls()
    Draft202012Validator(cls.schema()).validate(plugin.params.model_dump(mode="json"))
    _require(
        cls.Params(**plugin.params.model_dump()) == plugin.params,
        "defaults do not round-trip through the parameter model",
    )


def _check_unknown_refused(cls: type[Plugin]) -> None:
    try:
        cls(__not_a_parameter__=1)
    except ParameterError as exc:
        _require("__not_a_parameter__" in str(exc), f"the error does not name the field: {exc}")
        return
    raise ConformanceError("an unknown parameter was accepted")


WORK_COUNTS = ("steps", "queries")  # the shared names of how long an attack searches (_params.py)
QUICK_WORK = 20


def _attack(cls: type[Attack], **params) -> Attack:
    """The attack for a behaviour check: its work counts (steps, queries) cut to 20 when larger.
    Shapes, ranges, budgets and determinism do not depend on how long it searches, and a
    query-based attack at its default 5,000 queries per image would make the checks minutes long."""
    fields = cls.Params.model_fields
    for name in WORK_COUNTS:
        default = fields[name].default if name in fields else None
        if isinstance(default, int) and default > QUICK_WORK and name not in params:
            params[name] = QUICK_WORK
    return cls(**params)


def _check_attack_output(cls, clf, x, y) -> None:
    res = _attack(cls).run(clf, x, y, batch_size=5, seed=0)
    _require(res.x_adv.shape == x.shape, f"x_adv shape {res.x_adv.shape} != input {x.shape}")
    _require(res.x_adv.dtype == np.float32, f"x_adv dtype {res.x_adv.dtype}, expected float32")
    lo, hi = clf.clip
    _require(
        float(res.x_adv.min()) >= lo and float(res.x_adv.max()) <= hi,
        f"x_adv leaves the classifier's range {clf.clip}",
    )
    for name in ("success", "l2", "linf", "y_pred_adv"):
        _require(len(getattr(res, name)) == len(x), f"result.{name} has the wrong length")


def _check_attack_deterministic(cls, clf, x, y) -> None:
    first = _attack(cls).run(clf, x, y, batch_size=5, seed=3)
    second = _attack(cls).run(clf, x, y, batch_size=5, seed=3)
    _require(np.array_equal(first.x_adv, second.x_adv), "two runs with the same seed differ")


def _check_attack_budget(cls, clf, x, y) -> None:
    fields = cls.Params.model_fields
    if "eps" not in fields:
        return  # minimal-perturbation attacks (e.g. C&W) have no budget to hold
    budgets = {"inf": 0.05, "2": 0.3, "1": 2.0}  # in the units of each norm, on small images
    for norm in norms_of(cls):
        params = {"eps": budgets[norm]} if norm == "inf" else {"eps": budgets[norm], "norm": norm}
        res = _attack(cls, **params).run(clf, x, y, batch_size=5, seed=0)
        measured = {"inf": res.linf, "2": res.l2, "1": res.l1}[norm]
        worst = float(measured.max())
        _require(
            worst <= params["eps"] * (1 + 1e-6) + BUDGET_TOLERANCE,
            f"L{norm} budget {params['eps']} broken: a perturbation of {worst:.6g}",
        )


def _check_attack_targeted(cls, clf, x, y) -> None:
    target = (y + 1) % clf.num_classes
    res = _attack(cls, targeted=True).run(clf, x, y, target=target, batch_size=5, seed=0)
    _require(res.x_adv.shape == x.shape, "targeted run changed the shape")
    _require(
        np.array_equal(res.success, (res.y_pred_adv == target) & (res.y_pred == res.y)),
        "targeted success must mean 'classified right before, as the target after'",
    )


def _check_defense(cls, clf, x, y) -> None:
    defended = cls().apply(clf)
    _require(isinstance(defended, Classifier), "apply() must return an egide.Classifier")
    _require(defended.input_shape == clf.input_shape, "the defended input shape changed")
    _require(defended.num_classes == clf.num_classes, "the number of classes changed")
    labels = defended.predict(x)
    _require(labels.shape == (len(x),), "predictions have the wrong shape")
    if issubclass(cls, Preprocessor):
        _check_preprocessor(cls, clf, x)


def _check_preprocessor(cls, clf, x) -> None:
    """What attacks and the evaluation rely on: the transform stays in any declared range, a
    seed replays the defense, and the adaptive view is the same defense with a usable gradient."""
    import tensorflow as tf

    pre = cls()
    for lo, hi in ((0.0, 1.0), (-1.0, 1.0)):
        xs = tf.constant(lo + x * (hi - lo))
        z = pre.transform(xs, tf.random.Generator.from_seed(0), (lo, hi))
        _require(tuple(z.shape) == x.shape, f"transform changed the shape to {tuple(z.shape)}")
        _require(z.dtype == tf.float32, f"transform returned {z.dtype.name}, expected float32")
        z = z.numpy()
        _require(
            bool(np.isfinite(z).all()) and z.min() >= lo and z.max() <= hi,
            f"transform leaves the classifier's range ({lo:g}, {hi:g}): "
            f"[{z.min():.4g}, {z.max():.4g}]",
        )
    first, again = pre.apply(clf, seed=5), pre.apply(clf, seed=5)
    _require(
        np.array_equal(first.predict_logits(x), again.predict_logits(x)),
        "two defended classifiers with the same seed give different logits",
    )
    adaptive = pre.apply(clf, seed=5).adaptive()
    if not pre.randomized:
        _require(
            np.array_equal(adaptive.predict(x), first.predict(x)),
            "the adaptive view predicts differently from the defended classifier: its forward "
            "pass must be the real transform (BPDA changes only the backward pass)",
        )
    xs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(clf.predict(x)), logits=tf.cast(adaptive.logits(xs), tf.float32)
        )
    grad = tape.gradient(loss, xs)
    _require(
        grad is not None and bool(np.isfinite(grad.numpy()).all()) and bool(np.any(grad.numpy())),
        "the adaptive view gives no usable gradient (None, zero or not finite): an adaptive "
        "attacker must be able to differentiate it (BPDA for non-differentiable transforms)",
    )


def _fitted_detector(cls, clf, x) -> Detector:
    det = cls()
    adv = np.clip(x + 0.1 * np.sign(np.random.default_rng(0).normal(size=x.shape)), 0, 1)
    return det.fit(clf, x, adv.astype(np.float32) if det.supervised else None)


def _check_detector(cls, clf, x, y) -> None:
    det = _fitted_detector(cls, clf, x)
    scores = det.score(clf, x)
    _require(scores.shape == (len(x),), f"score() returned shape {scores.shape}, expected ({len(x)},)")
    _require(bool(np.all(np.isfinite(scores))), "score() returned NaN or Inf")
    _require(np.array_equal(scores, det.score(clf, x)), "scores differ between two calls")
    flags = det.detect(clf, x)
    _require(flags.dtype == bool and flags.shape == (len(x),), "detect() must return one bool per image")


def _check_differentiable_score(cls, clf, x, y) -> None:
    """The declared differentiable score is the score (on clean and on perturbed images), runs
    inside a tf.function, and gives a finite gradient that is not zero everywhere."""
    import tensorflow as tf

    det = _fitted_detector(cls, clf, x)
    fn = det.differentiable_score(clf)
    _require(callable(fn), "differentiable_score() must return a function of a batch of images")
    noisy = np.clip(x + 0.05 * np.random.default_rng(1).normal(size=x.shape), 0, 1).astype(np.float32)

    @tf.function
    def value_and_gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            scores = fn(images)
            total = tf.reduce_sum(scores)
        return scores, tape.gradient(total, images)

    for name, images in (("clean", x), ("perturbed", noisy)):
        values, grad = (np.asarray(t) for t in value_and_gradient(tf.constant(images)))
        expected = det.score(clf, images)
        _require(values.shape == expected.shape,
                 f"differentiable_score gave shape {values.shape} on {name} images, score() {expected.shape}")
        _require(np.allclose(values, expected, rtol=1e-4, atol=1e-4),
                 f"differentiable_score differs from score() on {name} images: largest gap "
                 f"{float(np.max(np.abs(values - expected))):.3g}")
        _require(grad is not None and grad.shape == images.shape and bool(np.all(np.isfinite(grad))),
                 f"the gradient of differentiable_score on {name} images is missing or not finite")
        _require(bool(np.any(grad != 0)), f"the gradient of differentiable_score is zero on every "
                 f"{name} image: an adaptive attack would learn nothing from it")


class _OnePluginRegistry:
    """Just enough of a registry for load_detector to recreate one (maybe unregistered) class."""

    def __init__(self, cls):
        self.cls = cls

    def create(self, kind, name, **params):
        _require(name == self.cls.name,
                 f"the saved file names plugin {name!r}, not {self.cls.name!r}")
        return self.cls(**params)


def _check_detector_save_load(cls, clf, x, y) -> None:
    """A saved detector, loaded for the same model, scores exactly as the one that was saved."""
    import tempfile
    from pathlib import Path

    from egide.core.detector import load_detector

    det = _fitted_detector(cls, clf, x)
    with tempfile.TemporaryDirectory() as tmp:
        path = det.save(Path(tmp) / "detector.npz")
        loaded = load_detector(path, clf, registry=_OnePluginRegistry(cls))
    _require(type(loaded) is cls, f"load_detector returned a {type(loaded).__name__}")
    _require(loaded.threshold == det.threshold,
             f"threshold {loaded.threshold} after loading, {det.threshold} before saving")
    _require(np.array_equal(loaded.score(clf, x), det.score(clf, x)),
             "scores after save and load differ from the scores before")


def _check_detector_unfitted(cls, clf, x, y) -> None:
    try:
        cls().score(clf, x)
    except EgideError as exc:
        _require("fit" in str(exc), f"the error for scoring before fit does not say to fit: {exc}")
        return
    raise ConformanceError("score() before fit() did not raise a clear error (an EgideError)")


def _check_detector_fpr(cls) -> None:
    _require("fpr" in cls.Params.model_fields,
             "declare the target false-positive rate: fpr: float = Field(0.05, gt=0, lt=1)")
    for bad in (0.0, 1.0, -0.1, 1.5):
        try:
            cls(fpr=bad)
        except ParameterError:
            continue
        raise ConformanceError(f"fpr={bad} was accepted; a false-positive rate lies in (0, 1)")


def _check_dataset(cls) -> None:
    from egide.core.dataset import Dataset

    for split in cls.splits:
        ds = cls().load(split=split)
        _require(isinstance(ds, Dataset), f"load(split={split!r}) must return an egide.Dataset")
        _require(len(ds) > 0, f"split {split!r} is empty")
    first, again = cls().load(split=cls.splits[0]), cls().load(split=cls.splits[0])
    _require(np.array_equal(first.x, again.x), "two loads of one split differ")


def _check_model(cls) -> None:
    clf = cls().load()
    _require(isinstance(clf, Classifier), "load() must return an egide.Classifier")
