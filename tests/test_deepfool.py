"""DeepFool: minimal perturbations in L2 and L-inf that flip the label, near the C&W minimum."""

import numpy as np
import pytest


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_deepfool_flips_nearly_every_image_with_a_small_perturbation(registry, clf, bars, norm):
    _, _, x_test, y_test = bars
    x, y = x_test[:60], y_test[:60]
    res = registry.create("attack", "deepfool", norm=norm).run(clf, x, y)
    assert res.success.mean() >= 0.95
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    assert (clf.predict(res.x_adv)[res.success] != y[res.success]).all()
    # Minimal: a uniform shift of the same size in a random direction rarely flips anything.
    size = res.l2 if norm == "2" else res.linf
    assert np.median(size[res.success]) < (1.0 if norm == "2" else 0.3)


def test_deepfool_l2_is_close_to_cw(registry, clf, bars):
    _, _, x_test, y_test = bars
    x, y = x_test[:40], y_test[:40]
    fool = registry.create("attack", "deepfool").run(clf, x, y)
    cw = registry.create("attack", "cw", binary_search_steps=5, steps=100).run(clf, x, y)
    both = fool.success & cw.success
    # DeepFool is a fast first-order approximation: within a small factor of the C&W minimum.
    assert np.median(fool.l2[both]) <= 3 * np.median(cw.l2[both])


def test_deepfool_declares_itself_minimal_in_its_norm(registry):
    assert registry.get("attack", "deepfool").budget == "minimal"
    assert registry.create("attack", "deepfool", norm="inf").norm == "inf"
    assert registry.create("attack", "deepfool").norm == "2"
