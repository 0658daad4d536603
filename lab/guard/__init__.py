"""Guards: a classifier behind a fitted detector (`Guard`), the detector-aware attack on one
(`attack.GuardAttack`), and how well a guard holds against attackers who ignore it and who know
it (`evaluation.evaluate_guard`)."""

from .guard import Guard

__all__ = ["Guard"]
