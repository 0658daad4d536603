"""The L1 threat model: the exact projection onto the L1 ball inside the input box, FAB's exact
L1 step onto a hyperplane, and the attacks of AutoAttack's L1 standard (l1-APGD after Croce &
Hein 2021, FAB-L1, Square-L1) holding their budget and breaking images."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import brentq, linprog

from egide.core.errors import InputError, ParameterError
from egide.lab.choices import norms_of
from egide.plugins.attacks._l1 import l1_hyperplane_step, project_l1_box


def _projection_by_root_finding(x0, x, eps, lo, hi):
    """An independent solution in float64: the KKT form, lam found by Brent's method."""
    d = x - x0
    a, room = np.abs(d), np.where(d >= 0, hi - x0, x0 - lo)
    size = lambda lam: np.clip(a - lam, 0, room).sum() - eps  # noqa: E731
    lam = 0.0 if size(0.0) <= 0 else brentq(size, 0.0, a.max(), xtol=1e-15)
    return x0 + np.sign(d) * np.clip(a - lam, 0, room)


@pytest.mark.parametrize("eps", [0.01, 0.4, 3.0, 50.0])
@pytest.mark.parametrize("box", [(0.0, 1.0), (-1.0, 2.0)])
def test_the_l1_box_projection_is_exact(eps, box):
    rng = np.random.default_rng(int(eps * 100))
    lo, hi = box
    x0 = rng.uniform(lo, hi, (6, 7, 5, 2)).astype(np.float32)
    x = (x0 + rng.normal(0, 0.6, x0.shape)).astype(np.float32)
    got = project_l1_box(tf.constant(x0), tf.constant(x), eps, lo, hi).numpy()
    want = np.stack([_projection_by_root_finding(x0[i].astype(np.float64), x[i].astype(np.float64), eps, lo, hi)
                     for i in range(len(x0))])
    np.testing.assert_allclose(got, want, atol=1e-5)  # float32 sums over 70 coordinates
    assert got.min() >= lo and got.max() <= hi
    assert np.abs(got - x0).reshape(len(x0), -1).sum(1).max() <= eps * (1 + 1e-6)


def test_a_point_inside_the_ball_and_the_box_does_not_move():
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0.2, 0.8, (3, 4, 4, 1)).astype(np.float32)
    x = x0 + rng.uniform(-0.01, 0.01, x0.shape).astype(np.float32)
    np.testing.assert_array_equal(project_l1_box(tf.constant(x0), tf.constant(x), 10.0, 0.0, 1.0).numpy(), x)


@pytest.mark.parametrize("trial", range(6))
def test_fabs_l1_step_onto_a_hyperplane_is_the_linear_programs_optimum(trial):
    """min ||d||_1 s.t. <w, d> = c, low <= d <= high, solved independently as a linear program
    (d = p - m, p, m >= 0); where the box cannot reach the hyperplane, every coordinate goes to
    its bound on the useful side."""
    rng = np.random.default_rng(trial)
    w = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
    x = rng.uniform(size=w.shape).astype(np.float32)
    low, high = -x, 1 - x
    c = np.float32(rng.normal() * [0.1, 1.0, 8.0][trial % 3])
    d = l1_hyperplane_step(tf.constant(w), tf.constant([c]), tf.constant(low), tf.constant(high)).numpy()
    assert (d >= low - 1e-6).all() and (d <= high + 1e-6).all()
    n, wf = w.size, w.ravel()
    eye = np.eye(n)
    lp = linprog(np.ones(2 * n), A_eq=np.concatenate([wf, -wf])[None], b_eq=[c],
                 A_ub=np.block([[eye, -eye], [-eye, eye]]), b_ub=np.concatenate([high.ravel(), -low.ravel()]),
                 bounds=(0, None))
    if lp.status == 0:
        assert (w * d).sum() == pytest.approx(c, abs=1e-5)
        assert np.abs(d).sum() == pytest.approx(lp.fun, rel=1e-5, abs=1e-6)
    else:
        reach = np.where(wf * np.sign(c) > 0, high.ravel(), low.ravel())
        np.testing.assert_allclose(d.ravel(), reach, atol=1e-6)


@pytest.mark.parametrize("attack, params", [("fab", {"steps": 20, "target_classes": 3}), ("square", {"queries": 300})])
def test_fab_and_square_hold_an_l1_budget_and_break_images(attack, params, clf, bars, registry):
    _, _, x, y = bars
    x, y = x[:40], y[:40]
    result = registry.create("attack", attack, eps=6.0, norm="1", **params).run(clf, x, y, seed=0)
    l1 = np.abs(result.x_adv - x).reshape(len(x), -1).sum(1)
    assert l1.max() <= 6.0 * (1 + 1e-5)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.robust_accuracy < result.clean_accuracy - 0.2


def test_only_attacks_that_have_an_l1_version_take_norm_1(registry):
    assert norms_of(registry.get("attack", "apgd")) == ("inf", "2", "1")
    assert norms_of(registry.get("attack", "pgd")) == ("inf", "2")
    assert registry.create("attack", "apgd", eps=2, norm="L1").norm == "1"
    with pytest.raises(ParameterError, match="norm"):
        registry.create("attack", "pgd", eps=2, norm="1")


@pytest.mark.parametrize("schedule", [False, True])
def test_l1_apgd_holds_its_budget_and_breaks_images(schedule, clf, bars, registry):
    _, _, x, y = bars
    x, y = x[:40], y[:40]
    attack = registry.create("attack", "apgd", eps=4.0, norm="1", steps=15, eps_schedule=schedule)
    result = attack.run(clf, x, y, seed=0)
    l1 = np.abs(result.x_adv - x).reshape(len(x), -1).sum(1)
    assert l1.max() <= 4.0 * (1 + 1e-5) and np.allclose(result.l1, l1, rtol=1e-5)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.robust_accuracy < result.clean_accuracy - 0.2  # it attacks, at a budget that allows it
    assert result.summary()["l1_max"] == pytest.approx(float(l1.max()), rel=1e-5)


def test_l1_apgd_is_sparse_where_l2_is_not(clf, bars, registry):
    """Mind the box's point: L1 steps move a few coordinates; an L2 attack of the same L1 size
    spreads over all of them."""
    _, _, x, y = bars
    x, y = x[:20], y[:20]
    l1 = registry.create("attack", "apgd", eps=1.5, norm="1", steps=20).run(clf, x, y, seed=0)
    moved = (np.abs(l1.x_adv - x) > 1e-6).reshape(len(x), -1).mean(1)
    l2 = registry.create("attack", "apgd", eps=0.4, norm="2", steps=20).run(clf, x, y, seed=0)
    moved_l2 = (np.abs(l2.x_adv - x) > 1e-6).reshape(len(x), -1).mean(1)
    assert np.median(moved) < np.median(moved_l2)


EPS_DISCARD = 1.5  # on these 80 images: 15 broken, 2 discarded


def test_l1_stage_discard_drops_only_what_the_2eps_stage_missed(clf, bars, registry):
    """`fast`'s stage_discard: a sample leaves before the last stage (unbroken, at its clean image)
    only if no point of the 2 eps stage broke it; every other sample runs as it does without
    discarding."""
    _, _, x, y = bars
    x, y = x[:80], y[:80]
    params = dict(eps=EPS_DISCARD, norm="1", steps=20, eps_schedule=True)
    plain = registry.create("attack", "apgd", **params).run(clf, x, y, seed=0)
    discarding = registry.create("attack", "apgd", stage_discard=True, **params).run(clf, x, y, seed=0)
    broken, broken_plain = discarding.y_pred_adv != y, plain.y_pred_adv != y
    l1 = np.abs(discarding.x_adv - x).reshape(len(x), -1).sum(1)
    discarded = ~broken & (l1 == 0)
    assert broken.any() and discarded.any()  # a budget where some samples fall and some are hopeless
    assert not np.any(broken & ~broken_plain)
    np.testing.assert_allclose(discarding.x_adv[~discarded], plain.x_adv[~discarded], atol=1e-5)
    assert l1.max() <= EPS_DISCARD * (1 + 1e-5) and discarding.x_adv.min() >= 0 and discarding.x_adv.max() <= 1


def test_stage_discard_without_the_l1_schedule_is_refused_clearly(clf, bars, registry):
    _, _, x, y = bars
    with pytest.raises(InputError, match="stage_discard works on the stages of the L1 eps schedule"):
        registry.create("attack", "apgd", eps=0.03, norm="inf", stage_discard=True).run(clf, x[:4], y[:4], seed=0)
