"""MagNet: an autoencoder fitted on clean bars images flags PGD examples and noisy images,
keeps its false-positive rate, saves and loads exactly, and reproduces under its seed."""

import numpy as np
import pytest

from egide.core import load_detector

from detection import auc


@pytest.fixture(scope="module")
def magnet(bars, clf, registry):
    return registry.create("detector", "magnet").fit(clf, bars[0])


def test_it_separates_pgd_examples_from_clean_images(magnet, clf, test_batch, registry):
    x, y = test_batch
    res = registry.create("attack", "pgd", eps=0.1).run(clf, x, y)
    adv = res.x_adv[res.success]
    assert len(adv) >= 20
    assert auc(magnet.score(clf, x), magnet.score(clf, adv)) > 0.9


def test_reconstruction_error_alone_flags_images_off_the_manifold(bars, clf, registry, test_batch):
    """Without the divergence, the score is the autoencoder's error: heavy noise raises it."""
    det = registry.create("detector", "magnet", divergence=False).fit(clf, bars[0])
    x = test_batch[0]
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    assert auc(det.score(clf, x), det.score(clf, noisy)) > 0.9


def test_the_threshold_keeps_the_false_positive_rate_on_clean_images(magnet, bars, clf):
    flagged = magnet.detect(clf, bars[0])
    assert 0.01 <= flagged.mean() <= magnet.params.fpr


def test_save_and_load_give_identical_scores(magnet, clf, test_batch, tmp_path):
    again = load_detector(magnet.save(tmp_path / "magnet.npz"), clf)
    x = test_batch[0]
    assert np.array_equal(again.score(clf, x), magnet.score(clf, x))
    assert again.threshold == magnet.threshold


def test_a_fit_reproduces_under_its_seed(bars, clf, registry, test_batch):
    x_fit, probe = bars[0][:200], test_batch[0]
    first = registry.create("detector", "magnet", steps=20, seed=5).fit(clf, x_fit)
    second = registry.create("detector", "magnet", steps=20, seed=5).fit(clf, x_fit)
    other = registry.create("detector", "magnet", steps=20, seed=6).fit(clf, x_fit)
    assert np.array_equal(first._raw_scores(clf, probe), second._raw_scores(clf, probe))
    assert not np.array_equal(first._raw_scores(clf, probe), other._raw_scores(clf, probe))
