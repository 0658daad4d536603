"""The supervised detectors `lid` and `learned`: they separate PGD examples from clean ones on
the bars CNN, refuse to fit without adversarial examples, save and load exactly, and reproduce."""

import numpy as np
import pytest

from egide.core import InputError, ModelError, load_detector

from detection import auc

SUPERVISED = ["lid", "learned"]


@pytest.fixture(scope="module")
def fit_data(bars, clf, registry):
    """300 training images of the bars task and their PGD versions."""
    x_train, y_train, _, _ = bars
    x, y = x_train[:300], y_train[:300]
    return x, registry.create("attack", "pgd", eps=0.1).run(clf, x, y).x_adv


@pytest.fixture(scope="module")
def fitted(clf, registry, fit_data):
    x, x_adv = fit_data
    return {name: registry.create("detector", name).fit(clf, x, x_adv) for name in SUPERVISED}


@pytest.mark.parametrize("name", SUPERVISED)
def test_it_separates_pgd_examples_from_clean_images(name, fitted, clf, test_batch, test_adv):
    det = fitted[name]
    assert auc(det.score(clf, test_batch[0]), det.score(clf, test_adv)) > 0.9
    # At the fitted threshold, most fooling examples are flagged and most clean images pass.
    assert det.detect(clf, test_adv).mean() > 0.7
    assert det.detect(clf, test_batch[0]).mean() < 0.2


@pytest.mark.parametrize("name", SUPERVISED)
def test_fitting_without_adversarial_examples_says_what_to_pass(name, registry, clf, fit_data):
    with pytest.raises(InputError, match=r"supervised.*det\.fit\(clf, x_clean, x_adv\)"):
        registry.create("detector", name).fit(clf, fit_data[0])


@pytest.mark.parametrize("name", SUPERVISED)
def test_save_and_load_give_identical_scores(name, fitted, clf, test_batch, tmp_path):
    det = fitted[name]
    path = det.save(tmp_path / f"{name}.npz")
    again = load_detector(path, clf)
    x = test_batch[0]
    assert np.array_equal(again.score(clf, x), det.score(clf, x))
    assert again.threshold == det.threshold
    assert again.params == det.params


@pytest.mark.parametrize("name", SUPERVISED)
def test_a_fit_reproduces_under_its_seed(name, fitted, registry, clf, fit_data, test_batch):
    x, x_adv = fit_data[0][:120], fit_data[1][:120]
    first = registry.create("detector", name, seed=3).fit(clf, x, x_adv)
    second = registry.create("detector", name, seed=3).fit(clf, x, x_adv)
    other = registry.create("detector", name, seed=4).fit(clf, x, x_adv)
    probe = test_batch[0]
    assert np.array_equal(first.score(clf, probe), second.score(clf, probe))
    assert not np.array_equal(first.score(clf, probe), other.score(clf, probe))


def test_lid_estimates_the_dimension_of_the_data():
    """Points spread over a d-dimensional subspace of a 50-dim space have LID about d."""
    import tensorflow as tf

    from egide.plugins.detectors.lid import _mle

    rng = np.random.default_rng(0)
    for d in (2, 8):
        basis = np.linalg.qr(rng.normal(size=(50, d)))[0].T  # (d, 50), orthonormal rows
        refs = (rng.uniform(size=(4000, d)) @ basis).astype(np.float32)
        queries = (rng.uniform(0.3, 0.7, size=(200, d)) @ basis).astype(np.float32)
        estimate = float(np.mean(_mle(tf.constant(queries), tf.constant(refs), None, 20)))
        assert abs(estimate - d) < 0.2 * d


def test_lid_finds_each_adversarial_examples_source_itself(registry, clf, fit_data, test_batch,
                                                           test_adv):
    """`egide evaluate` passes only the examples that fooled the model, so x_adv is a subset in
    another order: LID still never takes an example's own source as its neighbour."""
    from egide.plugins.detectors.lid import _nearest

    x, x_adv = fit_data
    picked = np.random.default_rng(0).permutation(len(x))[:150]
    assert np.array_equal(_nearest(x_adv[picked], x), picked)
    det = registry.create("detector", "lid").fit(clf, x, x_adv[picked])
    assert auc(det.score(clf, test_batch[0]), det.score(clf, test_adv)) > 0.9


def test_lid_reads_only_the_layers_asked_for(registry, clf, fit_data, test_batch, test_adv):
    """One named layer: one feature, and it still separates (the bars CNN's dense layer)."""
    det = registry.create("detector", "lid", layers="dense").fit(clf, *fit_data)
    assert det._coef.shape == (1,)
    assert auc(det.score(clf, test_batch[0]), det.score(clf, test_adv)) > 0.8


def test_learned_names_the_layers_when_asked_for_one_the_model_lacks(registry, clf, fit_data):
    with pytest.raises(ModelError, match="layers available: .*conv2d"):
        registry.create("detector", "learned", layer="no_such_layer").fit(clf, *fit_data)

