"""Parameter types that several plugins share, so each spells and validates them one way."""

from typing import Annotated, Literal

from pydantic import BeforeValidator


def _norm_as_text(value):
    """Accept 2, "2", "L2", "inf", "Linf" (and float('inf')) as the two norms."""
    return str(value).lower().removeprefix("l") if value is not None else value


# The norm of a perturbation budget: "inf" (L-inf) or "2" (L2).
Norm = Annotated[Literal["inf", "2"], BeforeValidator(_norm_as_text)]
