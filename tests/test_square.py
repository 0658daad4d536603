"""Square: a black-box search that keeps its budget in both norms, follows its schedule, and
breaks a model whose gradients are masked, where a gradient attack cannot."""

import keras
import numpy as np
import pytest

import egide


def square(registry, **params):
    return registry.create("attack", "square", **params)


def test_the_square_shrinks_along_the_papers_schedule(registry):
    atk = square(registry, queries=10_000, p_init=0.8)
    sides = [atk.side(q, 64, 64) for q in (0, 10, 11, 51, 201, 501, 1001, 2001, 4001, 6001, 8001)]
    expected = [round((0.8 / 2**k * 64 * 64) ** 0.5) for k in (0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)]
    assert sides == [max(s, 1) for s in expected]
    # Rescaled to the budget: with 1,000 queries the first halving comes after the second query.
    short = square(registry, queries=1000)
    assert short.side(1, 64, 64) == round((0.8 * 64 * 64) ** 0.5)
    assert short.side(2, 64, 64) == round((0.4 * 64 * 64) ** 0.5)
    # L2 squares have an odd side of at least 3.
    l2 = square(registry, norm="2", queries=10_000)
    assert all(l2.side(q, 64, 64) % 2 == 1 and l2.side(q, 64, 64) >= 3 for q in range(0, 10_000, 97))


@pytest.mark.parametrize("norm, eps", [("inf", 0.1), ("2", 0.8)])
def test_budget_and_range_hold(registry, clf, bars, norm, eps):
    _, _, x_test, y_test = bars
    res = square(registry, eps=eps, norm=norm, queries=200).run(clf, x_test[:40], y_test[:40])
    size = res.linf if norm == "inf" else res.l2
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    assert res.success.any(), "the search found nothing at a large budget"
    assert (clf.predict(res.x_adv)[res.success] != y_test[:40][res.success]).all()


def test_reproducible_under_a_seed(registry, clf, bars):
    _, _, x_test, y_test = bars
    atk = square(registry, eps=0.1, queries=50)
    a = atk.run(clf, x_test[:20], y_test[:20], seed=7).x_adv
    b = atk.run(clf, x_test[:20], y_test[:20], seed=7).x_adv
    np.testing.assert_array_equal(a, b)


class _Quantise(keras.layers.Layer):
    """Rounds inputs to black and white: piecewise constant, so its gradient is zero."""

    def call(self, x):
        return keras.ops.round(x)


def test_square_breaks_a_gradient_masking_model_that_apgd_cannot(registry, cnn_model, bars):
    _, _, x_test, y_test = bars
    masked = egide.Classifier.from_keras(keras.Sequential([keras.Input((8, 8, 1)), _Quantise(), *cnn_model.layers]))
    keep = np.flatnonzero(masked.predict(x_test) == y_test)[:40]
    x, y = x_test[keep], y_test[keep]
    white = registry.create("attack", "apgd", eps=0.4, steps=50).run(masked, x, y)
    black = square(registry, eps=0.4, queries=500).run(masked, x, y)
    assert black.success.mean() >= white.success.mean() + 0.3, (black.success.mean(), white.success.mean())
