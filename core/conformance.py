"""The conformance suite every plugin must pass (`egide.testing`).

    from egide.testing import check_plugin, plugin_checks
    check_plugin(MyAttack)                       # runs every check, raises on the first failure
    @pytest.mark.parametrize("check", plugin_checks(MyAttack), ids=str)
    def test_my_attack(check): check()           # one pytest test per check

Checks: the declaration follows the contract; the parameter schema is valid JSON Schema and
renders as a form; the defaults validate; unknown parameters are refused; and behaviour on a
small real Keras model: results are deterministic under a seed, shape/dtype/range are kept,
and an attack's budget holds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .attack import Attack
from .classifier import Classifier
from .defense import Defense
from .detector import Detector
from .errors import ParameterError
from .plugin import Plugin
from .schema import form_fields
from .sources import DatasetSource, ModelSource

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
        checks.append(("detector-scores", lambda: _check_detector(cls, *fixture())))
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
    x = rng.uniform(0.0, 1.0, (12, 8, 8, 1)).astype(np.float32)
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


def _attack(cls: type[Attack], **params) -> Attack:
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
    norms = ["inf", "2"] if "norm" in fields else ["inf"]
    for norm in norms:
        params = {"eps": 0.05} if norm == "inf" else {"eps": 0.3, "norm": "2"}
        res = _attack(cls, **params).run(clf, x, y, batch_size=5, seed=0)
        measured = res.linf if norm == "inf" else res.l2
        worst = float(measured.max())
        _require(
            worst <= params["eps"] + BUDGET_TOLERANCE,
            f"L{norm} budget {params['eps']} broken: a perturbation of {worst:.6g}",
        )


def _check_attack_targeted(cls, clf, x, y) -> None:
    target = (y + 1) % clf.num_classes
    res = _attack(cls, targeted=True).run(clf, x, y, target=target, batch_size=5, seed=0)
    _require(res.x_adv.shape == x.shape, "targeted run changed the shape")
    _require(
        np.array_equal(res.success, res.y_pred_adv == target),
        "targeted success must mean 'classified as the target'",
    )


def _check_defense(cls, clf, x, y) -> None:
    defended = cls().apply(clf)
    _require(isinstance(defended, Classifier), "apply() must return an egide.Classifier")
    _require(defended.input_shape == clf.input_shape, "the defended input shape changed")
    _require(defended.num_classes == clf.num_classes, "the number of classes changed")
    labels = defended.predict(x)
    _require(labels.shape == (len(x),), "predictions have the wrong shape")


def _check_detector(cls, clf, x, y) -> None:
    det = cls()
    adv = np.clip(x + 0.1 * np.sign(np.random.default_rng(0).normal(size=x.shape)), 0, 1)
    det.fit(clf, x, adv.astype(np.float32) if det.supervised else None)
    scores = det.score(clf, x)
    _require(scores.shape == (len(x),), f"score() returned shape {scores.shape}, expected ({len(x)},)")
    _require(bool(np.all(np.isfinite(scores))), "score() returned NaN or Inf")
    _require(np.array_equal(scores, det.score(clf, x)), "scores differ between two calls")
    flags = det.detect(clf, x)
    _require(flags.dtype == bool and flags.shape == (len(x),), "detect() must return one bool per image")


def _check_dataset(cls) -> None:
    from .data import Dataset

    for split in cls.splits:
        ds = cls().load(split=split)
        _require(isinstance(ds, Dataset), f"load(split={split!r}) must return an egide.Dataset")
        _require(len(ds) > 0, f"split {split!r} is empty")
    first, again = cls().load(split=cls.splits[0]), cls().load(split=cls.splits[0])
    _require(np.array_equal(first.x, again.x), "two loads of one split differ")


def _check_model(cls) -> None:
    clf = cls().load()
    _require(isinstance(clf, Classifier), "load() must return an egide.Classifier")
