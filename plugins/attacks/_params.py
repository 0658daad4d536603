"""The parameters attacks share, each written once: the budget, its norm, the step size, the
number of steps and the targeted switch. A plugin composes its pydantic `Params` from them."""

from pydantic import Field

from egide.core.params import BUDGET_UI

LINF_NOTE = "; L-inf: at most 1, the whole input range"


def eps_field(description: str = "Perturbation budget, in input units (8/255 ≈ 0.031)" + LINF_NOTE,
              most: float = 1e3, default=8 / 255):
    return Field(default, gt=0, le=most, json_schema_extra=BUDGET_UI, description=description)


def norm_field(description: str = "Norm of the budget: L-inf or L2"):
    return Field("inf", description=description)


def step_size_field(default_rule: str, most: float = 1e3):
    return Field(None, gt=0, le=most, json_schema_extra=BUDGET_UI,
                 description=f"Size of each step, in input units; empty (None) means {default_rule}")


def steps_field(default: int, description: str = "Number of gradient steps"):
    return Field(default, ge=1, le=100_000, description=description)


def targeted_field():
    return Field(False, description="Aim at given target labels instead of away from the true ones")
