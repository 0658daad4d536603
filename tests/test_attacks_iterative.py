"""Iterative gradient attacks: PGD (Madry et al.), BIM (Kurakin et al.), MIM (Dong et al.).

On the session's small trained CNN: budgets and ranges hold, the attacks are at least as
strong as FGSM, restarts keep the worst case per sample, targeted runs reach their targets,
MIM without momentum is BIM, early stop keeps each sample's first adversarial example, seeds
reproduce runs, softmax models are attacked through their logits, and bad input is refused
with errors a user can act on.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import egide
from egide.core.errors import InputError, ParameterError

# (attack, norm) pairs; BIM is L-inf only and takes no `norm` parameter.
VARIANTS = [("pgd", "inf"), ("pgd", "2"), ("bim", "inf"), ("mim", "inf"), ("mim", "2")]
IDS = [f"{name}-L{norm}" for name, norm in VARIANTS]
# Budgets at which FGSM leaves ~60% robust accuracy on the bars CNN (8x8 images in [0, 1]).
EPS = {"inf": 0.1, "2": 0.6}
TOL = 1e-5


def make(registry, name, norm="inf", **params):
    if name != "bim":
        params["norm"] = norm
    return registry.create("attack", name, **params)


def norms(x_adv, x):
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    return np.abs(delta).max(axis=1), np.sqrt((delta**2).sum(axis=1))


def cross_entropy(clf, x, y):
    logits = clf.predict_logits(x).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(y)), y]


# ---- budget and range ---------------------------------------------------------------------
@pytest.mark.parametrize("targeted", [False, True], ids=["untargeted", "targeted"])
@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_budget_and_range_hold(registry, clf, test_batch, name, norm, targeted):
    x, y = test_batch
    eps = EPS[norm]
    # Steps as large as the budget: without a projection every step would leave the ball.
    atk = make(registry, name, norm, eps=eps, step_size=eps, steps=5, targeted=targeted)
    target = (y + 1) % 3 if targeted else None
    res = atk.run(clf, x, y, target=target, seed=1)

    assert res.x_adv.shape == x.shape and res.x_adv.dtype == np.float32
    assert res.x_adv.min() >= 0.0 and res.x_adv.max() <= 1.0
    linf, l2 = norms(res.x_adv, x)
    size = linf if norm == "inf" else l2
    assert size.max() <= eps * (1 + TOL), f"{name}: perturbation {size.max()} > eps {eps}"
    assert size.max() >= 0.9 * eps, "the attack hardly moved: the budget check proves nothing"
    assert res.success.mean() > 0.2


# ---- strength -----------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_iterative_attacks_are_at_least_as_strong_as_fgsm(registry, clf, test_batch, name, norm):
    x, y = test_batch
    eps = EPS[norm]
    fgsm = registry.create("attack", "fgsm", eps=eps, norm=norm).run(clf, x, y)
    assert 0.3 < fgsm.robust_accuracy < 1.0, "pick an eps where FGSM neither fails nor wins"
    res = make(registry, name, norm, eps=eps).run(clf, x, y, seed=0)
    assert res.robust_accuracy <= fgsm.robust_accuracy
    if name == "pgd":  # 20 steps from a random start: clearly stronger, not merely as strong
        assert res.robust_accuracy <= fgsm.robust_accuracy - 0.1


@pytest.mark.parametrize("early_stop", [False, True], ids=["full", "early-stop"])
def test_more_restarts_are_never_weaker_per_sample(registry, clf, test_batch, early_stop):
    x, y = test_batch
    params = dict(eps=0.08, steps=5, early_stop=early_stop)
    one = registry.create("attack", "pgd", restarts=1, **params).run(clf, x, y, seed=3)
    three = registry.create("attack", "pgd", restarts=3, **params).run(clf, x, y, seed=3)

    assert 0 < one.success.sum() < len(x)
    # Restart 0 of a 3-restart run is the 1-restart run (same seed): per sample, nothing broken
    # by one restart is lost, and it keeps that very example (the first restart to break it).
    assert np.all(three.success[one.success])
    np.testing.assert_array_equal(three.x_adv[one.success], one.x_adv[one.success])
    # Samples no restart breaks keep the restart with the highest loss: never below restart 0.
    kept = ~three.success
    loss_three = cross_entropy(clf, three.x_adv[kept], y[kept])
    loss_one = cross_entropy(clf, one.x_adv[kept], y[kept])
    assert np.all(loss_three >= loss_one - 1e-5)
    # ... and for some of them a later restart did reach a higher loss, and was kept.
    assert np.any(loss_three > loss_one + 1e-4)


@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_targeted_attacks_reach_their_targets(registry, clf, test_batch, name, norm):
    x, y = test_batch
    target = (y + 1) % 3
    eps = {"inf": 0.2, "2": 1.5}[norm]
    res = make(registry, name, norm, eps=eps, steps=20, targeted=True).run(
        clf, x, y, target=target, seed=0
    )
    assert res.success_rate >= 0.95
    np.testing.assert_array_equal(res.success, res.y_pred_adv == target)


def reference_run(clf, x, y, name, norm, eps, alpha, steps, decay=1.0):
    """The papers' update rules written out step by step in eager TensorFlow and numpy."""

    def unit_l2(t):
        return t / np.linalg.norm(t.reshape(len(t), -1), axis=1).reshape(-1, 1, 1, 1)

    x_adv, velocity = x.copy(), np.zeros_like(x)
    for _ in range(steps):
        xt = tf.constant(x_adv)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=clf.logits(xt))
        grad = tape.gradient(loss, xt).numpy()
        if name == "mim":  # Dong et al., Algorithm 1: g <- mu * g + grad / ||grad||_1
            velocity = decay * velocity + grad / np.abs(grad).sum(axis=(1, 2, 3), keepdims=True)
            grad = velocity
        x_adv = x_adv + alpha * (np.sign(grad) if norm == "inf" else unit_l2(grad))
        delta = x_adv - x
        if norm == "inf":
            delta = np.clip(delta, -eps, eps)
        else:
            size = np.linalg.norm(delta.reshape(len(x), -1), axis=1).reshape(-1, 1, 1, 1)
            delta = delta * np.minimum(1.0, eps / size)
        x_adv = np.clip(x + delta, 0.0, 1.0).astype(np.float32)
    return x_adv


@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_updates_follow_the_papers(registry, clf, test_batch, name, norm):
    x, y = test_batch
    eps = EPS[norm]
    alpha, steps = eps / 2, 4  # steps big enough for the projection to matter
    params = dict(eps=eps, step_size=alpha, steps=steps)
    if name == "pgd":
        params["random_start"] = False
    if name == "mim":
        params["decay"] = 0.7
    res = make(registry, name, norm, **params).run(clf, x, y)
    expected = reference_run(clf, x, y, name, norm, eps, alpha, steps, decay=0.7)
    # Graph and eager kernels may differ in the last bits, which can flip the sign of a
    # gradient entry that is almost zero; anything beyond a few such pixels is a wrong rule.
    close = np.abs(res.x_adv - expected) <= 1e-4
    assert close.mean() >= 0.99, f"{(~close).sum()} of {close.size} pixels differ"


def test_untargeted_pgd_ascends_the_true_label_loss(registry, clf, test_batch):
    x, y = test_batch
    res = registry.create("attack", "pgd", eps=0.05, steps=10).run(clf, x, y)
    assert np.mean(cross_entropy(clf, res.x_adv, y) > cross_entropy(clf, x, y)) >= 0.95


def test_mim_without_momentum_is_bim(registry, clf, test_batch):
    x, y = test_batch
    same = dict(eps=0.1, step_size=0.02, steps=10)
    bim = registry.create("attack", "bim", **same).run(clf, x, y)
    mim0 = registry.create("attack", "mim", decay=0.0, **same).run(clf, x, y)
    mim1 = registry.create("attack", "mim", decay=1.0, **same).run(clf, x, y)
    np.testing.assert_allclose(mim0.x_adv, bim.x_adv, atol=1e-6)
    assert np.abs(mim1.x_adv - bim.x_adv).max() > 0.01, "momentum should change the path"


# ---- early stop and seeds -----------------------------------------------------------------
def test_early_stop_keeps_the_first_adversarial_example(registry, clf, test_batch):
    x, y = test_batch

    def pgd(steps, early_stop):
        atk = registry.create(
            "attack", "pgd", eps=0.1, step_size=0.03, steps=steps, early_stop=early_stop
        )
        return atk.run(clf, x, y, seed=5)

    short, long = pgd(4, True), pgd(15, True)
    first = short.success  # broken within 4 steps: frozen there for the rest of the run
    assert 0 < first.sum() < len(x)
    np.testing.assert_array_equal(long.x_adv[first], short.x_adv[first])
    assert np.all(long.success[first])
    # The control: without early stop those samples keep moving.
    free = pgd(15, False)
    assert np.abs(free.x_adv[first] - short.x_adv[first]).max() > 1e-3
    # Freezing changes no other sample's path, so early stop never loses a sample.
    assert np.all(long.success[free.success])


def test_runs_repeat_under_a_seed_and_differ_under_another(registry, clf, test_batch):
    x, y = test_batch
    atk = registry.create("attack", "pgd", eps=0.1, steps=5, restarts=2, early_stop=True)
    a, b = atk.run(clf, x, y, seed=11), atk.run(clf, x, y, seed=11)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)
    np.testing.assert_array_equal(a.success, b.success)
    other = atk.run(clf, x, y, seed=12)
    assert np.abs(other.x_adv - a.x_adv).max() > 1e-3
    assert a.config["params"]["restarts"] == 2 and a.seed == 11
    # Several batches, the last one partial: each batch has its own seed, still reproducible.
    c, d = atk.run(clf, x, y, seed=11, batch_size=24), atk.run(clf, x, y, seed=11, batch_size=24)
    np.testing.assert_array_equal(c.x_adv, d.x_adv)
    assert norms(c.x_adv, x)[0].max() <= 0.1 * (1 + TOL)


def test_without_random_start_pgd_ignores_the_seed(registry, clf, test_batch):
    x, y = test_batch
    atk = registry.create("attack", "pgd", eps=0.1, steps=5, random_start=False)
    np.testing.assert_array_equal(atk.run(clf, x, y, seed=1).x_adv, atk.run(clf, x, y, seed=2).x_adv)


# ---- softmax models -----------------------------------------------------------------------
@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_softmax_model_is_attacked_through_its_logits(
    registry, clf, softmax_clf, test_batch, name, norm
):
    x, y = test_batch
    atk = make(registry, name, norm, eps=EPS[norm])
    on_logits, on_softmax = atk.run(clf, x, y, seed=0), atk.run(softmax_clf, x, y, seed=0)
    assert on_logits.robust_accuracy < 0.9
    assert on_softmax.robust_accuracy <= on_logits.robust_accuracy + 2 / len(x)
    assert np.mean(np.abs(on_softmax.x_adv - on_logits.x_adv) < 1e-4) > 0.95


# ---- a model without gradients ------------------------------------------------------------
class _Round(keras.layers.Layer):
    """Rounds the input: no gradient flows back through it (gradient masking)."""

    def call(self, x):
        return keras.ops.round(x)


@pytest.mark.parametrize(("name", "norm"), VARIANTS, ids=IDS)
def test_a_model_without_input_gradients_stalls_the_attack_without_error(
    registry, cnn_model, test_batch, name, norm
):
    x, y = test_batch
    masked = egide.Classifier.from_keras(
        keras.Sequential([keras.Input((8, 8, 1)), _Round(), *cnn_model.layers])
    )
    params = dict(eps=EPS[norm], steps=3)
    if name == "pgd":
        params["random_start"] = False
    res = make(registry, name, norm, **params).run(masked, x[:8], y[:8])
    np.testing.assert_array_equal(res.x_adv, x[:8])  # a zero gradient moves nothing


# ---- parameters ---------------------------------------------------------------------------
def test_defaults_and_derived_step_sizes(registry):
    pgd, bim, mim = (registry.create("attack", n) for n in ("pgd", "bim", "mim"))
    assert pgd.params.model_dump() == dict(
        eps=8 / 255, norm="inf", step_size=None, steps=20, random_start=True, restarts=1,
        targeted=False, early_stop=False,
    )
    assert bim.params.model_dump() == dict(eps=8 / 255, step_size=None, steps=10, targeted=False)
    assert mim.params.model_dump() == dict(
        eps=8 / 255, norm="inf", step_size=None, steps=10, decay=1.0, targeted=False
    )
    assert pgd.step_size == pytest.approx(2.5 * (8 / 255) / 20)
    assert bim.step_size == pytest.approx(1 / 255)  # Kurakin et al.'s 1 grey level per step
    assert mim.step_size == pytest.approx((8 / 255) / 10)
    assert registry.create("attack", "pgd", step_size=0.01).step_size == 0.01
    assert registry.create("attack", "mim", norm="L2").params.norm == "2"
    for cls in (type(pgd), type(bim), type(mim)):
        fields = cls.schema()["properties"]
        assert all(field.get("description") for field in fields.values()), cls.name


@pytest.mark.parametrize("name", ["pgd", "bim", "mim"])
@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"eps": 0}, "eps", "greater than 0"),
        ({"eps": -0.1}, "eps", "greater than 0"),
        ({"steps": 0}, "steps", "greater than or equal to 1"),
        ({"steps": -3}, "steps", "greater than or equal to 1"),
        ({"step_size": 0}, "step_size", "greater than 0"),
        ({"stepsize": 0.1}, "stepsize", "Did you mean 'step_size'?"),
    ],
    ids=["eps-zero", "eps-negative", "steps-zero", "steps-negative", "step-zero", "misspelt"],
)
def test_bad_parameters_are_refused(registry, name, params, field, rule):
    with pytest.raises(ParameterError) as info:
        registry.create("attack", name, **params)
    assert field in str(info.value) and rule in str(info.value)
    assert info.value.errors[0]["field"] == field


@pytest.mark.parametrize(
    ("name", "params", "field", "rule"),
    [
        ("pgd", {"restarts": 0}, "restarts", "greater than or equal to 1"),
        ("pgd", {"norm": "1"}, "norm", "'inf' or '2'"),
        ("mim", {"norm": "1"}, "norm", "'inf' or '2'"),
        ("mim", {"decay": -0.5}, "decay", "greater than or equal to 0"),
        ("bim", {"norm": "2"}, "norm", "unknown parameter"),
        ("pgd", {"restarts": 3, "random_start": False}, "restarts", "needs random_start=True"),
    ],
)
def test_attack_specific_parameters_are_checked(registry, name, params, field, rule):
    with pytest.raises(ParameterError) as info:
        registry.create("attack", name, **params)
    assert field in str(info.value) and rule in str(info.value)


# ---- inputs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pgd", "bim", "mim"])
def test_bad_inputs_are_refused_with_clear_errors(registry, clf, test_batch, name):
    x, y = test_batch
    x, y = x[:4], y[:4]
    untargeted = registry.create("attack", name, steps=2)
    targeted = registry.create("attack", name, steps=2, targeted=True)

    with pytest.raises(InputError, match="untargeted attack"):
        untargeted.run(clf, x, y, target=(y + 1) % 3)
    with pytest.raises(InputError, match="targeted=True needs target labels"):
        targeted.run(clf, x, y)
    with pytest.raises(InputError, match=r"target labels must lie in 0\.\.2"):
        targeted.run(clf, x, y, target=np.array([0, 1, 3, 1]))
    nan = x.copy()
    nan[1, 2, 3, 0] = np.nan
    with pytest.raises(InputError, match=r"NaN or Inf values \(1 image"):
        untargeted.run(clf, nan, y)
    with pytest.raises(InputError, match="the batch is empty"):
        untargeted.run(clf, x[:0], y[:0])
    # An L-inf budget beyond the whole [0, 1] range is a unit mistake, refused with the parameters.
    with pytest.raises(ParameterError, match=r"eps: (an L-inf budget is at most 1|Input should be less than or equal to 1)"):
        registry.create("attack", name, eps=2.0)
