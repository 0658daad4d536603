"""Plugin parameter schemas flattened into form fields.

The CLI's help, the JSON API and the web page all read a plugin's parameters from its pydantic
JSON Schema. `form_fields` reduces that schema to one descriptor per parameter, so every front
end renders the same thing, and so the conformance suite can prove each schema renders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

WIDGETS = ("number", "integer", "checkbox", "select", "text", "budget")


class SchemaRenderError(ValueError):
    """A parameter whose schema no front end knows how to show."""


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    widget: str  # one of WIDGETS
    description: str = ""
    default: Any = None
    required: bool = False
    optional: bool = False  # null is an accepted value ("derive it" / "none")
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: list = field(default_factory=list)
    ui: dict = field(default_factory=dict)  # hints under `x-ui`, e.g. {"widget": "slider"}

    def to_dict(self) -> dict:
        return asdict(self)


def form_fields(schema: dict) -> list[FormField]:
    """One FormField per property of an object schema; SchemaRenderError if one can't be shown."""
    if schema.get("type") != "object":
        raise SchemaRenderError("a parameter schema must be an object")
    required = set(schema.get("required", []))
    return [
        _field(name, prop, name in required, schema.get("$defs", {}))
        for name, prop in schema.get("properties", {}).items()
    ]


def _field(name: str, prop: dict, required: bool, defs: dict) -> FormField:
    prop = _resolve(prop, defs)
    optional = False
    variants = prop.get("anyOf")
    if variants:
        non_null = [_resolve(v, defs) for v in variants if v.get("type") != "null"]
        optional = len(non_null) < len(variants)
        if len(non_null) != 1:
            raise SchemaRenderError(f"parameter '{name}': a choice of several types can't be rendered")
        prop = {**prop, **non_null[0]}
    kind = prop.get("type")
    if "enum" in prop or "const" in prop:
        widget, choices = "select", list(prop.get("enum", [prop.get("const")]))
    elif kind == "number" and prop.get("x-ui", {}).get("widget") == "budget":
        widget, choices = "budget", []  # a number or a fraction such as 8/255: a text box
    elif kind in ("number", "integer"):
        widget, choices = kind, []
    elif kind == "boolean":
        widget, choices = "checkbox", []
    elif kind == "string":
        widget, choices = "text", []
    else:
        raise SchemaRenderError(
            f"parameter '{name}' has schema type {kind!r}; use a number, integer, boolean, string "
            "or an enum (Literal) so the forms can render it"
        )
    lo = prop.get("minimum", prop.get("exclusiveMinimum"))
    hi = prop.get("maximum", prop.get("exclusiveMaximum"))
    return FormField(
        name=name,
        label=prop.get("title", name),
        widget=widget,
        description=prop.get("description", ""),
        default=prop.get("default"),
        required=required,
        optional=optional,
        minimum=lo,
        maximum=hi,
        exclusive_minimum="exclusiveMinimum" in prop,
        exclusive_maximum="exclusiveMaximum" in prop,
        choices=choices,
        ui=dict(prop.get("x-ui", {})),
    )


def _resolve(prop: dict, defs: dict) -> dict:
    ref = prop.get("$ref")
    if ref and ref.startswith("#/$defs/"):
        merged = {**defs[ref.split("/")[-1]], **{k: v for k, v in prop.items() if k != "$ref"}}
        return merged
    return prop
