"""How sure a proportion is: the exact (Clopper–Pearson) confidence interval of k successes in n
trials, the interval a review board can check by hand.

The interval's ends are quantiles of Beta distributions (Clopper & Pearson 1934):
    low  = Beta(alpha/2; k, n - k + 1)      (0 when k = 0)
    high = Beta(1 - alpha/2; k + 1, n - k)  (1 when k = n)
It never undercovers, unlike the normal approximation near 0% and 100%, where robust accuracies
often sit.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import beta

SMALL_SAMPLE = 30  # below this many images, the card says the interval is too wide to lean on


@dataclass(frozen=True)
class Proportion:
    """k of n, with its exact interval at `confidence`."""

    k: int
    n: int
    low: float
    high: float
    confidence: float = 0.95

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def small_sample(self) -> bool:
        return self.n < SMALL_SAMPLE

    def text(self) -> str:
        """"15.0% (95% CI 11.5–19.2%, n = 360)", or "no images" when n is 0."""
        if not self.n:
            return "no images"
        return (f"{self.value:.1%} ({self.confidence:.0%} CI {self.low * 100:.1f}–{self.high:.1%}, "
                f"n = {self.n})")


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> Proportion:
    """The exact two-sided interval of k successes in n trials."""
    if not 0 <= k <= n:
        raise ValueError(f"k = {k} successes out of n = {n} trials: k must be between 0 and n")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} must be strictly between 0 and 1")
    if n == 0:
        return Proportion(0, 0, 0.0, 1.0, confidence)
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Proportion(int(k), int(n), low, high, confidence)
