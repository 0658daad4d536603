"""Parameter types that several plugins share, so each spells and validates them one way."""

from typing import Annotated, Literal

from pydantic import BeforeValidator


def _norm_as_text(value):
    """Accept 2, "2", "L2", 1, "L1", "inf", "Linf" (and float('inf')) as the norms."""
    return str(value).lower().removeprefix("l") if value is not None else value


# The norm of a perturbation budget: "inf" (L-inf) or "2" (L2); "1" (L1) for attacks that have it.
Norm = Annotated[Literal["inf", "2"], BeforeValidator(_norm_as_text)]
NormWithL1 = Annotated[Literal["inf", "2", "1"], BeforeValidator(_norm_as_text)]


# ---- perturbation budgets: a number, or a fraction of the input range such as "8/255" ------------
def parse_budget(value):
    """8/255, "8/255", "0.5/255", "0.0157" or 0.0157 -> a float; other text is left for the
    float validation to refuse. The same syntax on the command line, in configs and over JSON."""
    if not isinstance(value, str):
        return value
    num, slash, den = value.strip().partition("/")
    try:
        return float(num) / float(den) if slash else float(num)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"not a budget: {value!r}; write a number (0.0157) or a fraction (4/255)") from None


# A budget parameter: float with the fraction syntax. Forms show it as text ("8/255").
Budget = Annotated[float, BeforeValidator(parse_budget)]
BUDGET_UI = {"x-ui": {"widget": "budget"}}
