"""PGD — Projected Gradient Descent (Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018).

From a random point of the eps-ball around x (`random_start`), take `steps` steps of size
`step_size` along the steepest-ascent direction of the cross-entropy loss — sign(grad) for
L-inf, grad / ||grad||_2 for L2 — and after every step project back onto the ball, then clip
into the classifier's range. Targeted mode descends the loss of the target class instead.

Restarts keep the worst case per sample: a sample is broken if any restart breaks it, and it
keeps the x_adv of the first restart that did; a sample no restart breaks keeps the restart
with the highest loss (lowest target loss when targeted).

Seeds: restart r of image i starts from draw r of (seed, i) (`egide.core.randomness`): the same
for any batch size, and restart 0 of an R-restart run is exactly the 1-restart run with the same
seed, so more restarts never break fewer samples.

Early stop: a sample that is misclassified (on target) at the start of a step is frozen there,
decided from the logits the step computes anyway; later restarts start it frozen too. Each
sample thus keeps its first adversarial example, and the loop ends once every sample is frozen.

Cost: one compiled tf.function per classifier runs everything (all restarts, all steps):
`steps` forward+backward passes per restart, plus one forward pass per restart to score it
when restarts > 1. The loop is the projected-gradient family's (`_projected.py`), shared with
BIM and MIM.
"""

from pydantic import BaseModel, Field, model_validator

from egide.core import hookimpl
from egide.core.params import Budget, Norm
from egide.plugins.attacks._params import (
    eps_field,
    norm_field,
    step_size_field,
    steps_field,
    targeted_field,
)
from egide.plugins.attacks._projected import ProjectedGradient


class PGD(ProjectedGradient):
    """Iterated gradient steps from a random start, projected onto the eps-ball every step."""

    name = "pgd"
    title = "Projected Gradient Descent"
    step_factor = 2.5
    # Full strength from the image itself: a random start in a ball as large as the input range
    # is uniform noise, where the model's gradients say nothing about the image.
    full_strength = {"steps": 50, "random_start": False, "early_stop": True}
    evaluation = {"steps": 20, "restarts": 1}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field()
        norm: Norm = norm_field()
        step_size: Budget | None = step_size_field("2.5 * eps / steps")
        steps: int = steps_field(20, "Gradient steps per restart")
        random_start: bool = Field(
            True, description="Start each restart from a uniformly random point of the eps-ball"
        )
        restarts: int = Field(
            1,
            ge=1,
            le=1000,
            description="Independent random starts; each sample keeps its worst case over them",
        )
        targeted: bool = targeted_field()
        early_stop: bool = Field(
            False,
            description="Freeze each sample at its first adversarial example (misclassified, or "
            "on target) and stop when all are; otherwise every sample takes every step",
        )

        @model_validator(mode="after")
        def _restarts_need_random_start(self):
            if self.restarts > 1 and not self.random_start:
                raise ValueError(
                    "restarts > 1 needs random_start=True: without a random start every "
                    "restart repeats the same run"
                )
            return self


@hookimpl
def egide_register_attacks(register):
    register(PGD)
