"""BIM — Basic Iterative Method (Kurakin, Goodfellow & Bengio, ICLR 2017 workshop).

FGSM applied `steps` times with a small step, starting from the clean image (no random start):
x_{t+1} = Clip_range( Clip_{x, eps}( x_t + step_size * sign(grad) ) ), an L-inf attack.
Targeted mode (the paper's "iterative least-likely class" generalised to any target) descends
the loss of the target class instead.

The default step size, 1.25 * eps / steps, is the paper's schedule: with eps = 8/255 and
10 steps it is 1/255 per step, and the steps add up to 1.25 * eps so the ball's edge is reached.

Cost: `steps` forward+backward passes, in one compiled tf.function per classifier: the
projected-gradient family's loop (`_projected.py`), from the image, without restarts.
"""

from pydantic import BaseModel

from egide.core import hookimpl
from egide.core.params import Budget
from egide.plugins.attacks._params import (
    eps_field,
    step_size_field,
    steps_field,
    targeted_field,
)
from egide.plugins.attacks._projected import ProjectedGradient


class BIM(ProjectedGradient):
    """Iterated FGSM steps from the clean image, clipped to the L-inf eps-ball every step."""

    name = "bim"
    title = "Basic Iterative Method"
    step_factor = 1.25
    full_strength = {"steps": 50}
    evaluation = {"steps": 10}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field("L-inf budget, in input units (8/255 ≈ 0.031)", most=1)
        step_size: Budget | None = step_size_field(
            "1.25 * eps / steps (Kurakin et al.: 1/255 for eps = 8/255 and 10 steps)", most=1)
        steps: int = steps_field(10)
        targeted: bool = targeted_field()


@hookimpl
def egide_register_attacks(register):
    register(BIM)
