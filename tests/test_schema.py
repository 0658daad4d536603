"""Parameter schemas reduce to form fields every front end renders the same way."""

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from egide.lab.schema import SchemaRenderError, form_fields


class Params(BaseModel, extra="forbid"):
    eps: float = Field(0.03, gt=0, le=1, description="budget", json_schema_extra={"x-ui": {"widget": "slider"}})
    norm: Literal["inf", "2"] = Field("inf", description="norm")
    step_size: float | None = Field(None, gt=0, description="derived when empty")
    steps: int = Field(10, ge=1, description="iterations")
    targeted: bool = Field(False, description="aim at targets")
    label: str = Field("x", description="free text")


def test_each_parameter_becomes_one_field():
    fields = {f.name: f for f in form_fields(Params.model_json_schema())}
    assert list(fields) == ["eps", "norm", "step_size", "steps", "targeted", "label"]
    eps = fields["eps"]
    assert (eps.widget, eps.minimum, eps.exclusive_minimum, eps.maximum, eps.default) == ("number", 0, True, 1, 0.03)
    assert eps.ui == {"widget": "slider"} and eps.description == "budget"
    assert (fields["norm"].widget, fields["norm"].choices) == ("select", ["inf", "2"])
    assert fields["step_size"].optional and fields["step_size"].widget == "number"
    assert (fields["steps"].widget, fields["steps"].minimum) == ("integer", 1)
    assert fields["targeted"].widget == "checkbox"
    assert fields["label"].widget == "text"


def test_unrenderable_parameters_are_named():
    class Bad(BaseModel, extra="forbid"):
        sizes: list[int] = Field(default_factory=list)

    with pytest.raises(SchemaRenderError, match="'sizes'"):
        form_fields(Bad.model_json_schema())
