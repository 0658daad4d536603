"""FAB: minimal perturbations in L-inf and L2 (closer than DeepFool's), FAB-T over the top
classes, and the AutoAttack use with eps: beyond it, nothing is returned."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(bars):
    _, _, x_test, y_test = bars
    return x_test[:40], y_test[:40]


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_fab_finds_closer_adversarials_than_deepfool(registry, clf, batch, norm):
    x, y = batch
    fab = registry.create("attack", "fab", norm=norm, steps=50).run(clf, x, y)
    fool = registry.create("attack", "deepfool", norm=norm).run(clf, x, y)
    assert fab.success.mean() >= 0.95
    assert (clf.predict(fab.x_adv)[fab.success] != y[fab.success]).all()
    size = (lambda r: r.linf) if norm == "inf" else (lambda r: r.l2)
    both = fab.success & fool.success
    assert np.median(size(fab)[both]) <= 1.05 * np.median(size(fool)[both])


def test_fab_t_aims_at_the_top_classes_one_after_another(registry, clf, batch):
    x, y = batch
    res = registry.create("attack", "fab", steps=30, target_classes=2).run(clf, x, y)
    assert res.success.mean() >= 0.95 and res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_with_eps_an_adversarial_beyond_it_is_not_returned(registry, clf, batch):
    x, y = batch
    eps = 0.05
    res = registry.create("attack", "fab", steps=30, eps=eps, restarts=2).run(clf, x, y)
    assert res.linf.max() <= eps * (1 + 1e-5) + 1e-6
    failed = ~res.success
    np.testing.assert_array_equal(res.x_adv[failed], x[failed])
    unbounded = registry.create("attack", "fab", steps=30).run(clf, x, y)
    assert res.success.mean() <= unbounded.success.mean()
