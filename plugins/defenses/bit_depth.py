"""Bit-depth reduction — feature squeezing's colour-depth squeezer (Xu, Evans & Qi, NDSS 2018).

Each pixel is rounded to the nearest of 2^bits evenly spaced levels spanning the classifier's
input range: x' = lo + round((x - lo) / (hi - lo) * (2^bits - 1)) / (2^bits - 1) * (hi - lo).
A perturbation smaller than half a level is erased; a larger one moves a pixel a whole level.

Rounding is a step function: its gradient is zero almost everywhere, so an attacker who
differentiates the defended model as it is gets nothing. The adaptive attacker uses BPDA with
the identity as the backward pass (the rounding is within half a level of it).
"""

from pydantic import BaseModel, Field

from egide.core import Preprocessor, hookimpl
from egide.plugins.squeezers import bit_depth


class BitDepth(Preprocessor):
    """Round every pixel to one of 2^bits levels over the input range."""

    name = "bit-depth"
    title = "Bit-depth reduction"

    class Params(BaseModel, extra="forbid", frozen=True):
        bits: int = Field(
            5, ge=1, le=8, description="Bits per pixel kept: 2^bits grey levels (8 = 256 levels)"
        )

    def transform(self, x, rng, clip):
        return bit_depth(x, self.params.bits, *clip)


@hookimpl
def egide_register_defenses(register):
    register(BitDepth)
