"""MIM — Momentum Iterative Method (Dong, Liao, Pang, Su, Zhu, Hu & Li, CVPR 2018).

BIM with a velocity: each step's gradient is normalised by its L1 norm per sample and
accumulated, g <- decay * g + grad / ||grad||_1, and the image moves along sign(g) (L-inf) or
g / ||g||_2 (L2), then is projected onto the eps-ball and clipped into the classifier's range.
It starts from the clean image. With decay = 0 it is BIM. Targeted mode descends the loss of the
target class instead.

The default step size, eps / steps, is the paper's: the steps add up to exactly eps.

Cost: `steps` forward+backward passes, in one compiled tf.function per classifier: the
projected-gradient family's loop (`_projected.py`) with its momentum, from the image.
"""

from pydantic import BaseModel, Field

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


class MIM(ProjectedGradient):
    """Iterated gradient steps with momentum over L1-normalised gradients."""

    name = "mim"
    title = "Momentum Iterative Method"
    step_factor = 1.0
    momentum = True
    full_strength = {"steps": 50}
    evaluation = {"steps": 10}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field()
        norm: Norm = norm_field()
        step_size: Budget | None = step_size_field("eps / steps")
        steps: int = steps_field(10)
        decay: float = Field(
            1.0,
            ge=0,
            le=100,
            description="Momentum decay factor μ (1.0 in the paper; 0 gives BIM)",
        )
        targeted: bool = targeted_field()


@hookimpl
def egide_register_attacks(register):
    register(MIM)
