"""Combined detectors: flag an input when any of several detectors would.

Tried as a stronger guard after measuring single detectors against adaptive attacks (issue 14):
an attacker must then pass every member at once, through one perturbation, and the members see
different things (feature squeezing: the prediction's fragility; Mahalanobis: hidden features
far from their class; MagNet: the image far from the data's manifold). Carlini & Wagner (2017)
and Bryniarski et al. (2022) found such unions still fall to an attacker who optimises against
all of them; the README's guard table measures whether they do here.

Each member is fitted on the same clean images with its own threshold t_i (at its own target
false-positive rate). The score is the largest margin over a member's threshold, in units of the
spread sigma_i of that member's clean fit scores,

    score(x) = max_i (s_i(x) - t_i) / sigma_i,

so a member that flags x makes the score positive; the combined threshold is then set on the
clean fit scores at `fpr`, as for every detector, which keeps the union's false-positive rate
at the target rather than the sum of the members'. Members are unsupervised detectors (fitted on
clean images only), with their default parameters.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field, field_validator

from egide.core import Detector, InputError, hookimpl


class Combined(Detector):
    """Flags an input when any member detector would: the largest standardised margin."""

    name = "combined"
    title = "Combined detectors (any member flags)"
    score_gradient = ("each member's own: exact, or the BPDA its score declares (feature "
                      "squeezing's rounding, MagNet's tail probabilities); the max picks one")

    class Params(BaseModel, extra="forbid", frozen=True):
        members: str = Field(
            "feature-squeezing,mahalanobis,magnet", min_length=1, max_length=400,
            description="Comma-separated unsupervised detectors, each with its default parameters")
        fpr: float = Field(0.05, gt=0, lt=1, description="Target false-positive rate on the clean fit data")

        @field_validator("members")
        @classmethod
        def _names(cls, value: str) -> str:
            names = [n.strip() for n in value.split(",") if n.strip()]
            if len(names) < 2 or len(set(names)) != len(names):
                raise ValueError("name at least two different detectors, separated by commas")
            if "combined" in names:
                raise ValueError("a combined detector cannot be its own member")
            return ",".join(names)

    def _member_names(self) -> list[str]:
        return self.params.members.split(",")

    def _fit(self, clf, x_clean, x_adv):
        from egide.core.registry import registry

        reg = registry()
        self.members = []
        for name in self._member_names():
            member = reg.create("detector", name)
            if member.supervised:
                raise InputError(f"combined: {name} is supervised (it needs adversarial examples to "
                                 "fit); combine unsupervised detectors")
            self.members.append(member.fit(clf, x_clean))
        self._spreads(clf, x_clean)

    def _spreads(self, clf, x_clean) -> None:
        spread = np.array([m.score(clf, x_clean).std() for m in self.members])
        self.sigma = np.where(spread > 0, spread, 1.0)

    def _score(self, clf, x):
        margins = [(m.score(clf, x) - m.threshold) / s for m, s in zip(self.members, self.sigma)]
        return np.max(margins, axis=0)

    def _differentiable_score(self, clf):
        import tensorflow as tf

        parts = [(m.differentiable_score(clf), float(m.threshold), float(s))
                 for m, s in zip(self.members, self.sigma)]
        missing = [m.name for m in self.members if m.score_gradient is None]
        if missing:
            raise InputError(f"combined: {', '.join(missing)} has no differentiable score")

        def score(x):
            return tf.reduce_max(tf.stack([(tf.cast(fn(x), tf.float64) - t) / s for fn, t, s in parts],
                                          axis=1), axis=1)

        return score

    # ---- saving: each member's state and threshold, under its index -------------------------
    def _state(self):
        state = {"sigma": self.sigma,
                 "member_thresholds": np.array([m.threshold for m in self.members])}
        for i, m in enumerate(self.members):
            state.update({f"member{i}/{k}": v for k, v in m._state().items()})
        return state

    def _load_state(self, clf, state):
        from egide.core.detector import fingerprint
        from egide.core.registry import registry

        reg = registry()
        self.members = []
        for i, name in enumerate(self._member_names()):
            member = reg.create("detector", name)
            prefix = f"member{i}/"
            member._load_state(clf, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            member.threshold = float(state["member_thresholds"][i])
            member.fitted_on = fingerprint(clf)
            self.members.append(member)
        self.sigma = state["sigma"]


@hookimpl
def egide_register_detectors(register):
    register(Combined)
