"""Detectors attacked adaptively: the detector-aware attack keeps its budget and reproduces under a
seed; on the demo it takes a detector the literature breaks (Mahalanobis: Carlini & Wagner 2017
broke its kind) far below its non-adaptive guarded robust accuracy, and never above it; a detector
without a differentiable score is attacked through a surrogate, and the result says so."""

import numpy as np
import pytest
from pydantic import BaseModel, Field

import egide
from egide.core import Detector
from egide.lab.guard.attack import GuardAttack
from egide.lab.guard.evaluation import evaluate_guard

EPS = 4 / 255


@pytest.fixture(scope="module")
def demo(registry):
    clf = egide.Classifier.load("brain-tumor-cnn")
    data = registry.create("dataset", "brain-tumor-phantom")
    val, test = data.load("val"), data.load("test")
    return clf, val.x[:256], test.x[:48], test.y[:48]


@pytest.fixture(scope="module")
def mahalanobis(demo, registry):
    clf, fit_x, _, _ = demo
    return registry.create("detector", "mahalanobis").fit(clf, fit_x)


@pytest.mark.parametrize("norm, eps", [("inf", EPS), ("2", 0.5)])
def test_the_attack_keeps_its_budget_and_reproduces_under_a_seed(demo, mahalanobis, norm, eps):
    clf, _, x, y = demo
    attack = GuardAttack(eps=eps, norm=norm, steps=5)
    first = attack.run(clf, mahalanobis, x[:16], y[:16], seed=3)
    delta = (first.x_adv - x[:16]).reshape(16, -1)
    size = np.abs(delta).max(axis=1) if norm == "inf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert first.x_adv.min() >= 0.0 and first.x_adv.max() <= 1.0
    np.testing.assert_array_equal(first.x_adv, attack.run(clf, mahalanobis, x[:16], y[:16], seed=3).x_adv)
    assert not np.array_equal(first.x_adv, attack.run(clf, mahalanobis, x[:16], y[:16], seed=4).x_adv)
    # An image counted as evading is misclassified and under the threshold, on the exact score.
    ok = first.evaded
    assert np.all(first.y_pred_adv[ok] != y[:16][ok])
    assert np.all(mahalanobis.score(clf, first.x_adv[ok]) <= mahalanobis.threshold)


def test_mahalanobis_falls_to_the_adaptive_attack_on_the_demo(demo, mahalanobis):
    clf, _, x, y = demo
    result = evaluate_guard(clf, mahalanobis, x, y, EPS, steps=20)
    plain, adaptive = result.pairs()[0]
    assert plain.attack == "pgd" and not plain.adaptive and adaptive.adaptive
    # Against an attacker who ignores it, the detector flags nearly every example that fools the
    # model; one who knows it passes it, and the guard's protection collapses.
    assert plain.detection_rate >= 0.8 and plain.guarded_robust_accuracy >= 0.8
    assert adaptive.guarded_robust_accuracy <= plain.guarded_robust_accuracy - 0.3
    assert adaptive.detection_rate <= 0.2
    assert result.falls() == {EPS: True}
    assert adaptive.through == "mahalanobis: exact"
    doc = result.to_dict()
    assert doc["falls_to_adaptive_attack"] == {str(EPS): True} and len(doc["runs"]) == 2


class NumpyOnlyDetector(Detector):
    """A third-party detector scored in NumPy only: the largest softmax probability, inverted."""

    name = "numpy-only"
    title = "NumPy-only detector"

    class Params(BaseModel, extra="forbid", frozen=True):
        fpr: float = Field(0.05, gt=0, lt=1, description="target false-positive rate")

    def _fit(self, clf, x_clean, x_adv):
        pass

    def _score(self, clf, x):
        logits = clf.predict_logits(x)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return 1.0 - (p / p.sum(axis=1, keepdims=True)).max(axis=1)


def test_a_detector_without_a_gradient_is_attacked_through_a_surrogate(clf, test_batch, bars):
    x, y = test_batch
    det = NumpyOnlyDetector().fit(clf, bars[0][:200])
    assert det.differentiable_score(clf) is None
    result = evaluate_guard(clf, det, x[:32], y[:32], 0.1, steps=10)
    plain, adaptive = result.pairs()[0]
    assert adaptive.through.startswith("surrogate feature-squeezing")
    assert adaptive.guarded_robust_accuracy <= plain.guarded_robust_accuracy
    with pytest.raises(egide.EgideError, match="give a surrogate detector"):
        GuardAttack(eps=0.1, steps=2).run(clf, det, x[:4], y[:4])


def test_the_combined_detector_flags_what_any_member_would(clf, bars, test_adv, registry):
    x_train, _, x_test, _ = bars
    det = registry.create("detector", "combined", members="feature-squeezing,mahalanobis").fit(clf, x_train[:200])
    images = np.concatenate([x_test[:50], test_adv[:50]])
    margins = det.score(clf, images)
    members = np.stack([m.detect(clf, images) for m in det.members])
    assert np.array_equal(margins > 0, members.any(axis=0))  # positive margin: some member flags
    assert det.detect(clf, test_adv).mean() >= max(m.detect(clf, test_adv).mean() for m in det.members) - 0.05
    with pytest.raises(egide.EgideError, match="lid is supervised"):
        registry.create("detector", "combined", members="lid,feature-squeezing").fit(clf, x_train[:50])
    with pytest.raises(egide.EgideError, match="at least two different detectors"):
        registry.create("detector", "combined", members="feature-squeezing")
