"""C&W L2: what users rely on — it breaks (nearly) everything, with small perturbations, and its
binary search, confidence and determinism behave as documented."""

import numpy as np
import pytest

from egide.core import InputError, ParameterError

CW = dict(binary_search_steps=5, steps=100)


def cw(registry, **params):
    return registry.create("attack", "cw", **{**CW, **params})


@pytest.fixture(scope="module")
def untargeted(registry, clf, test_batch):
    x, y = test_batch
    return cw(registry).run(clf, x, y)


def test_untargeted_breaks_nearly_everything_inside_the_range(untargeted, clf, test_batch):
    x, y = test_batch
    assert untargeted.success_rate >= 0.99
    assert untargeted.x_adv.dtype == np.float32 and untargeted.x_adv.shape == x.shape
    assert untargeted.x_adv.min() >= 0.0 and untargeted.x_adv.max() <= 1.0
    # What run() reports is what the model says about the returned images.
    assert np.all(clf.predict(untargeted.x_adv)[untargeted.success] != y[untargeted.success])
    assert np.all(untargeted.l2[untargeted.success] > 0)


def test_targeted_hits_its_targets(registry, clf, test_batch):
    x, y = test_batch
    target = (y + 1) % clf.num_classes
    res = cw(registry, targeted=True).run(clf, x, y, target=target)
    assert res.success_rate >= 0.99
    assert np.all(res.y_pred_adv[res.success] == target[res.success])


def test_finds_smaller_perturbations_than_pgd_needs(registry, untargeted, clf, test_batch):
    if "pgd" not in registry.names("attack"):
        pytest.skip("the pgd attack is not registered")
    x, y = test_batch
    # The smallest PGD-L2 budget (on a 0.05 grid) at which PGD is as successful as C&W;
    # PGD stops at each image's first adversarial iterate, so its L2 is not just eps.
    for eps in np.arange(0.4, 2.0, 0.05):
        pgd = registry.create(
            "attack", "pgd", norm="2", eps=float(eps), steps=50, random_start=False,
            restarts=1, early_stop=True,
        ).run(clf, x, y)
        if pgd.success_rate >= untargeted.success_rate:
            break
    else:
        pytest.fail("PGD-L2 never matched C&W's success rate up to eps=2")
    cw_l2 = untargeted.l2[untargeted.success].mean()
    assert cw_l2 < pgd.l2[pgd.success].mean()
    assert cw_l2 < 0.8 * eps  # well inside the budget PGD needs for every image


def test_binary_search_raises_the_constant_only_where_it_failed(registry, clf, test_batch):
    x, y = test_batch
    c0 = 0.05
    # Which images a single round at c0 breaks (each image's search is independent of the
    # others, so this is exactly the first round of the longer search below).
    first = cw(registry, initial_const=c0, binary_search_steps=1).run(clf, x, y).success
    assert 0 < first.sum() < len(first), "c0 should split the batch for this test to mean much"
    attack = cw(registry, initial_const=c0, binary_search_steps=3)
    res = attack.run(clf, x, y, batch_size=16)  # constants are gathered over every batch
    c = attack.search_constants
    assert c.shape == (len(x),)
    assert np.all(c[first] < c0)  # broken at c0: the search went down (bisection below c0)
    assert np.all(c[~first] > c0)  # not broken at c0: raised
    assert res.success_rate >= 0.99


def test_images_never_broken_come_back_clean(registry, clf, test_batch):
    x, y = test_batch
    attack = cw(registry, initial_const=1e-4, binary_search_steps=2, steps=20)
    res = attack.run(clf, x, y)
    assert not res.success.any()
    np.testing.assert_array_equal(res.x_adv, x)
    # Failed every round: c was multiplied by 10 after each one, and nothing else.
    np.testing.assert_allclose(attack.search_constants, 1e-4 * 100, rtol=1e-5)


def test_more_confidence_gives_larger_margin_adversarials(registry, untargeted, clf, test_batch):
    x, y = test_batch
    kappa = 3.0
    strong = cw(registry, confidence=kappa).run(clf, x, y)
    assert strong.success_rate >= 0.99
    both = untargeted.success & strong.success
    assert strong.l2[both].mean() > 1.1 * untargeted.l2[both].mean()
    z = clf.predict_logits(strong.x_adv)[strong.success]
    label = y[strong.success]
    rows = np.arange(len(z))
    z_label = z[rows, label]
    z[rows, label] = -np.inf
    assert np.all(z.max(axis=1) - z_label > kappa - 1e-3)


def test_deterministic(registry, untargeted, clf, test_batch):
    x, y = test_batch
    attack = cw(registry)
    first = attack.run(clf, x, y, seed=1)
    again = attack.run(clf, x, y, seed=2)  # the seed is accepted and unused
    np.testing.assert_array_equal(first.x_adv, again.x_adv)
    np.testing.assert_array_equal(first.x_adv, untargeted.x_adv)  # a fresh instance too
    # Each image's search ignores the rest of its batch (early abort is per image), so the
    # batch size does not change the result beyond float noise.
    constants = attack.search_constants
    small_batches = attack.run(clf, x, y, batch_size=16)
    np.testing.assert_allclose(small_batches.x_adv, first.x_adv, atol=1e-3)
    np.testing.assert_allclose(attack.search_constants, constants, rtol=1e-3)


def test_softmax_model_is_attacked_through_its_logits(
    registry, untargeted, softmax_clf, test_batch
):
    x, y = test_batch
    res = cw(registry).run(softmax_clf, x, y)
    assert res.success_rate >= 0.99
    # Same weights, logits recovered: the same small perturbations as on the logits model.
    assert res.l2.mean() == pytest.approx(untargeted.l2.mean(), rel=0.05)


def test_default_parameters(registry):
    params = registry.create("attack", "cw").params
    assert params.confidence == 0 and params.initial_const == 1e-2
    assert params.binary_search_steps == 9 and params.steps == 100
    assert params.learning_rate == 1e-2 and params.targeted is False and params.abort_early is True


@pytest.mark.parametrize(
    "params",
    [
        dict(confidence=-1),
        dict(initial_const=0),
        dict(binary_search_steps=0),
        dict(steps=0),
        dict(learning_rate=0),
        dict(kappa=1),
    ],
    ids=lambda p: next(iter(p)),
)
def test_invalid_parameters_are_refused(registry, params):
    with pytest.raises(ParameterError):
        registry.create("attack", "cw", **params)


def test_bad_inputs_are_refused_clearly(registry, clf, test_batch):
    x, y = test_batch
    with pytest.raises(InputError, match="untargeted"):
        cw(registry).run(clf, x, y, target=y)
    with pytest.raises(InputError, match="needs target labels"):
        cw(registry, targeted=True).run(clf, x, y)
    with pytest.raises(InputError, match="target labels must lie in"):
        cw(registry, targeted=True).run(clf, x, y, target=np.full_like(y, clf.num_classes))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cw(registry).run(clf, bad, y)
    with pytest.raises(InputError, match="empty"):
        cw(registry).run(clf, x[:0], y[:0])
