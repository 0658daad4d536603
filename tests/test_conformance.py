"""Every registered plugin — built-in or installed — passes the conformance suite."""

import numpy as np
import pytest
from pydantic import BaseModel, Field

import egide
from egide.core import Attack, Detector
from egide.testing import ConformanceError, check_plugin, plugin_checks

ALL_CHECKS = [check for cls in egide.registry().plugins() for check in plugin_checks(cls)]


@pytest.mark.parametrize("check", ALL_CHECKS, ids=str)
def test_registered_plugin_conforms(check):
    check()


def test_every_kind_of_check_ran_on_the_example_plugin():
    names = {str(c) for c in ALL_CHECKS}
    assert "attack-example-noise-attack-budget" in names
    assert "detector-example-max-softmax-detector-scores" in names


def test_conformance_runs_on_your_own_model_and_data(clf, test_batch):
    x, y = test_batch
    done = check_plugin(egide.registry().get("attack", "fgsm"), data=(clf, x[:10], y[:10]))
    assert "attack-budget" in done


class _OverBudget(Attack):
    """Breaks its budget: doubles eps."""

    name = "over-budget"
    title = "Over budget"

    class Params(BaseModel, extra="forbid"):
        eps: float = Field(0.1, gt=0, description="budget it does not respect")

    def perturb(self, clf, x, y, target, seed):
        import tensorflow as tf

        return tf.clip_by_value(x - 2 * self.params.eps, 0.0, 1.0)


class _Random(_OverBudget):
    """Ignores the seed."""

    name = "unseeded"

    def perturb(self, clf, x, y, target, seed):
        return np.clip(np.asarray(x) + np.random.uniform(-0.01, 0.01, x.shape), 0, 1)


class _BadSchema(_OverBudget):
    name = "bad-schema"

    class Params(BaseModel, extra="forbid"):
        eps: float = Field(0.1, gt=0)
        shape: list[tuple[int, int]] = Field(default_factory=list, description="not renderable")


class _ScoreDisagrees(Detector):
    """Declares a differentiable score that is not its score."""

    name = "score-disagrees"
    title = "Score disagrees"
    score_gradient = "exact"

    class Params(BaseModel, extra="forbid"):
        fpr: float = Field(0.05, gt=0, lt=1, description="target false-positive rate")

    def _fit(self, clf, x_clean, x_adv):
        pass

    def _score(self, clf, x):
        return np.asarray(clf.predict_logits(x)).max(axis=1)

    def _differentiable_score(self, clf):
        import tensorflow as tf

        return lambda x: tf.reduce_max(clf.logits(x), axis=1) + 1.0  # off by one

    def _state(self):
        return {}

    def _load_state(self, clf, state):
        pass


def test_a_half_declared_differentiable_score_is_refused():
    class Undeclared(_ScoreDisagrees):
        name = "undeclared"
        score_gradient = None

    with pytest.raises(TypeError, match="score_gradient exactly when implementing"):
        Undeclared.check_declaration()


@pytest.mark.parametrize(
    "cls, check, message",
    [
        (_ScoreDisagrees, "detector-differentiable-score", "differs from score"),
        (_OverBudget, "attack-budget", "budget 0.05 broken"),
        (_Random, "attack-deterministic", "same seed differ"),
        (_BadSchema, "schema-renders", "use a number, integer, boolean"),
    ],
)
def test_the_suite_catches_broken_plugins(cls, check, message):
    [selected] = [c for c in plugin_checks(cls) if c.name == check]
    with pytest.raises(ConformanceError, match=message):
        selected()
