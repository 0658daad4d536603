"""Clopper–Pearson intervals: the exact interval scipy's binomial test gives, at the edges too."""

import pytest
from scipy.stats import binomtest

from egide.lab.report.intervals import clopper_pearson


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 9), (4, 9), (9, 9), (54, 360), (180, 360), (359, 360),
                                  (3, 1000)])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_the_interval_is_scipys_exact_one(k, n, confidence):
    got = clopper_pearson(k, n, confidence)
    want = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    assert got.low == pytest.approx(want.low, abs=1e-12) and got.high == pytest.approx(want.high, abs=1e-12)
    assert got.low <= got.value <= got.high


def test_small_samples_are_said_to_be_small_and_the_text_carries_n():
    assert clopper_pearson(4, 9).small_sample and not clopper_pearson(54, 360).small_sample
    assert clopper_pearson(54, 360).text() == "15.0% (95% CI 11.5–19.1%, n = 360)"
    assert clopper_pearson(0, 0).text() == "no images"


def test_impossible_counts_are_refused_clearly():
    with pytest.raises(ValueError, match="k must be between 0 and n"):
        clopper_pearson(5, 4)
