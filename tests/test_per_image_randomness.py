"""One config, one result: image i of a run draws its random start, restarts and queries from
(seed, i), so the batch size changes nothing but float rounding."""

import numpy as np
import pytest

import egide
from egide.core import randomness

RANDOM_ATTACKS = [
    ("pgd", {"eps": 0.1, "steps": 10, "restarts": 2}),
    ("pgd", {"eps": 0.3, "norm": "2", "steps": 5}),
    ("apgd", {"eps": 0.05, "steps": 20, "restarts": 2}),
    ("apgd", {"eps": 0.05, "steps": 10, "loss": "dlr"}),
    ("apgd", {"eps": 2.0, "norm": "1", "steps": 20, "restarts": 2, "eps_schedule": True}),
    ("fab", {"eps": 0.1, "steps": 10, "restarts": 2}),
    ("square", {"eps": 0.1, "queries": 100}),
    ("square", {"eps": 0.5, "norm": "2", "queries": 100}),
    ("square", {"eps": 2.0, "norm": "1", "queries": 100}),
]


@pytest.mark.parametrize("name, params", RANDOM_ATTACKS, ids=lambda v: v if isinstance(v, str) else None)
def test_an_attack_gives_each_image_the_same_result_in_any_batch(name, params, clf, bars, registry):
    _, _, x, y = bars
    x, y = x[:40], y[:40]
    attack = registry.create("attack", name, **params)
    small = attack.run(clf, x, y, batch_size=7, seed=3)
    auto = attack.run(clf, x, y, seed=3)
    assert auto.batch_size != 7
    np.testing.assert_allclose(small.x_adv, auto.x_adv, atol=1e-5)
    assert np.array_equal(small.y_pred_adv, auto.y_pred_adv)
    other = attack.run(clf, x, y, batch_size=7, seed=4)
    if name != "fab":  # FAB's first run starts from the image itself
        assert not np.allclose(other.x_adv, small.x_adv)  # the seed does matter


def test_an_evaluation_gives_the_same_per_image_results_for_any_batch_size(clf, bars):
    from egide.lab.evaluation.pipeline import evaluate

    _, _, x, y = bars
    data = egide.Dataset(x[:30], y[:30], ("horizontal", "vertical", "diagonal"))
    config = {"model": "bars", "data": "bars", "attacks": [{"plugin": "pgd", "params": {"steps": 5}}],
              "eps": [0.05, 0.1], "suite": "quick", "gallery": 0}
    reports = [evaluate({**config, "batch_size": b}, classifier=clf, dataset=data) for b in (7, None)]
    for a, b in zip(*(r.runs for r in reports)):
        assert np.array_equal(a.robust, b.robust)
    for a, b in zip(*(r.suite.runs for r in reports)):
        assert np.array_equal(a.robust, b.robust) and list(a.broken_by) == list(b.broken_by)


def test_draws_are_per_image_and_per_stream():
    import tensorflow as tf

    seed = tf.constant([5, 10], tf.int64)  # images 10, 11, ...
    batch = randomness.uniform([6, 3, 3, 1], seed)
    alone = randomness.uniform([1, 3, 3, 1], tf.constant([5, 13], tf.int64))
    assert np.array_equal(batch[3], alone[0])  # image 13 is image 13, in any batch
    normal = randomness.normal([4, 8], seed)
    assert np.array_equal(normal[2], randomness.normal([1, 8], tf.constant([5, 12], tf.int64))[0])
    assert not np.array_equal(randomness.uniform([2, 4], randomness.draw(seed, 0)),
                              randomness.uniform([2, 4], randomness.draw(seed, 1)))
    subset = randomness.for_rows(seed, tf.constant([1, 4]))(randomness.uniform, [3])
    assert np.array_equal(subset, tf.gather(randomness.uniform([5, 3], seed), [1, 4]))


@pytest.mark.parametrize("defense, params", [("gaussian-noise", {"sigma": 0.2}),
                                             ("randomized-smoothing", {"sigma": 0.2, "samples": 20})])
def test_a_randomized_defense_draws_per_image_so_any_batch_gives_the_same_result(defense, params, clf,
                                                                                bars, registry):
    from egide.lab.services import attack_on

    _, _, x, y = bars
    x, y = x[:30], y[:30]
    defended = registry.create("defense", defense, **params).apply(clf, seed=0)
    attack = registry.create("attack", "pgd", eps=0.1, steps=5)
    small, auto = (attack_on(attack, defended, defended.adaptive(eot_samples=4), x, y, batch_size=b, seed=1)
                   for b in (7, None))
    assert auto.batch_size != 7
    np.testing.assert_allclose(small.x_adv, auto.x_adv, atol=1e-5)
    assert np.array_equal(small.y_pred, auto.y_pred) and np.array_equal(small.y_pred_adv, auto.y_pred_adv)
    defended.reseed(5)
    by_7 = defended.predict_logits(x, batch_size=7)
    defended.reseed(5)
    assert np.allclose(by_7, defended.predict_logits(x, batch_size=64), atol=1e-5)
    assert not np.allclose(by_7, defended.predict_logits(x, batch_size=7))  # drawn afresh
