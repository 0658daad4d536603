"""APGD: the step-size schedule of the paper on a logged run, budgets in both norms, the loss
requirements, and strength against PGD with the same number of steps."""

import numpy as np
import pytest

import egide
from egide.core.errors import InputError


def apgd(registry, **params):
    return registry.create("attack", "apgd", **params)


def checkpoints(steps: int) -> list[int]:
    """The paper's checkpoints w_j = ceil(p_j N): p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (in whole iterations, as the reference)."""
    first, decay, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at, interval = [], 0, first
    while at + interval <= steps:
        at += interval
        marks.append(at)
        interval = max(interval - decay, shortest)
    return marks


def test_checkpoints_of_100_iterations_are_the_papers():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("norm, eps", [("inf", 0.05), ("2", 0.5)])
def test_the_step_size_halves_exactly_where_the_papers_conditions_hold(registry, clf, bars, norm, eps):
    """Replay the checkpoint rules on the logged objective and compare with the logged step sizes."""
    _, _, x_test, y_test = bars
    steps, rho = 100, 0.75
    log = apgd(registry, eps=eps, norm=norm, steps=steps, rho=rho).trace(clf, x_test[:24], y_test[:24], seed=3)
    values, etas = log["objective"], log["step_size"]
    assert values.shape == etas.shape == (steps + 1, 24)
    np.testing.assert_allclose(etas[0], 2 * eps, rtol=1e-6)  # eta starts at 2 eps
    marks = checkpoints(steps)
    changed = sorted({int(i) for i in np.flatnonzero(np.any(etas[1:] != etas[:-1], axis=1)) + 1})
    assert set(changed) <= set(marks), f"the step size changed off the checkpoints: {changed}"

    expected = etas[0].copy()
    reduced_before = np.ones(24, bool)
    last = 0
    best = np.maximum.accumulate(values, axis=0)  # best objective after each iteration
    for mark in marks:
        rises = (values[last + 1 : mark + 1] > values[last:mark]).sum(axis=0)
        oscillating = rises <= rho * (mark - last)
        stalled = ~reduced_before & (best[last] >= best[mark])
        halve = oscillating | stalled
        expected = np.where(halve, expected / 2, expected)
        np.testing.assert_allclose(etas[mark], expected, rtol=1e-6, err_msg=f"checkpoint {mark}")
        reduced_before, last = halve, mark
    assert (etas[-1] < etas[0]).any(), "no step was ever halved: the test would prove nothing"


@pytest.mark.parametrize("norm, eps", [("inf", 0.03), ("2", 0.3)])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_budget_and_range_hold(registry, clf, bars, norm, eps, loss):
    _, _, x_test, y_test = bars
    res = apgd(registry, eps=eps, norm=norm, loss=loss, steps=20, restarts=2).run(clf, x_test[:40], y_test[:40])
    size = res.linf if norm == "inf" else res.l2
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    # A sample the attack broke keeps an adversarial example.
    assert (clf.predict(res.x_adv)[res.success] != y_test[:40][res.success]).all()


def test_each_loss_says_how_many_classes_it_needs(registry, clf, bars):
    _, _, x_test, y_test = bars  # three classes
    with pytest.raises(InputError, match="'dlr-targeted' needs at least 4 classes.*has 3"):
        apgd(registry, loss="dlr-targeted").run(clf, x_test[:4], y_test[:4])
    apgd(registry, loss="dlr", steps=2).run(clf, x_test[:4], y_test[:4])  # 3 classes: enough


def test_targeted_apgd_reaches_given_targets(registry, clf, bars):
    _, _, x_test, y_test = bars
    target = (y_test[:30] + 1) % 3
    res = apgd(registry, eps=0.3, steps=30, targeted=True).run(clf, x_test[:30], y_test[:30], target=target)
    assert res.success.mean() >= 0.9 and (res.y_pred_adv[res.success] == target[res.success]).all()


@pytest.fixture(scope="module")
def demo():
    clf = egide.Classifier.load("brain-tumor-cnn")
    ds = egide.datasets.load("brain-tumor-phantom", split="test")
    return clf, ds.x[:64], ds.y[:64]


def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_steps(registry, demo):
    clf, x, y = demo
    pgd = registry.create("attack", "pgd", eps=2 / 255, steps=50).run(clf, x, y)
    auto = apgd(registry, eps=2 / 255, steps=50).run(clf, x, y)
    targeted = apgd(registry, eps=2 / 255, steps=50, loss="dlr-targeted").run(clf, x, y)
    assert auto.robust_accuracy <= pgd.robust_accuracy + 1 / len(y)
    assert targeted.robust_accuracy <= pgd.robust_accuracy + 1 / len(y)


def test_more_restarts_never_break_fewer(registry, demo):
    clf, x, y = demo
    one = apgd(registry, eps=1 / 255, steps=20, restarts=1).run(clf, x, y, seed=5)
    three = apgd(registry, eps=1 / 255, steps=20, restarts=3).run(clf, x, y, seed=5)
    assert three.robust_accuracy <= one.robust_accuracy
    assert not (one.success & ~three.success).any()  # restart 0 is the same run


def _dlr(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The untargeted DLR of each row, as APGD maximises it (0 where the class changes)."""
    top = -np.sort(-logits, axis=1)
    own = logits[np.arange(len(y)), y]
    best_other = np.where(logits.argmax(1) == y, top[:, 1], top[:, 0])
    return -(own - best_other) / (top[:, 0] - top[:, 2] + 1e-12)


def test_a_restart_within_a_margin_goes_only_to_the_samples_the_first_run_brought_that_close(registry, clf, bars):
    # Per sample: near the boundary after the first run (DLR above -margin), it gets the restart
    # and ends as with 2 restarts for all; farther, it ends as with 1 run. Randomness is per image,
    # so who else restarts changes nothing.
    _, _, x_test, y_test = bars
    x, y = x_test[:60], y_test[:60]
    params = dict(eps=0.1, loss="dlr", steps=5, norm="inf")
    once = apgd(registry, restarts=1, **params).run(clf, x, y, seed=3)
    twice = apgd(registry, restarts=2, **params).run(clf, x, y, seed=3)
    closeness = _dlr(clf.predict_logits(once.x_adv), y)[~once.success]
    assert (twice.success & ~once.success).any(), "the second start should break some sample here"
    values = np.sort(closeness)
    split = len(values) // 2
    margin = -float(values[split - 1] + values[split]) / 2  # halfway between two samples' values
    within = apgd(registry, restarts=2, restart_within=margin, **params).run(clf, x, y, seed=3)
    unbroken = np.flatnonzero(~once.success)
    near, far = unbroken[closeness > -margin], unbroken[closeness <= -margin]
    assert len(near) and len(far)
    np.testing.assert_array_equal(within.x_adv[far], once.x_adv[far])
    np.testing.assert_array_equal(within.x_adv[near], twice.x_adv[near])
    np.testing.assert_array_equal(within.x_adv[once.success], once.x_adv[once.success])


def test_restart_within_needs_a_dlr_loss(registry, clf, bars):
    _, _, x_test, y_test = bars
    with pytest.raises(InputError, match="restart_within.*DLR units"):
        apgd(registry, restart_within=0.1).run(clf, x_test[:4], y_test[:4])
