"""Plugin base classes: what every attack, defense and detector declares and how it is created.

A plugin class declares `name`, `title`, an optional `description` and `version`, and a
pydantic `Params` model (with `extra="forbid"`). The core, the CLI, the JSON API and the web
page read only these attributes; parameters are validated once, at creation, and then frozen.
"""

from __future__ import annotations

import difflib
import re
import textwrap
import weakref
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .batch_relaxed import batch_relaxed_function
from .errors import InputError, ParameterError

KINDS = ("attack", "defense", "detector", "dataset", "model", "model-format")
_NAME_RULE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class NoParams(BaseModel):
    """Parameters of a plugin that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin:
    """Base of every plugin. Subclasses set the class attributes below and implement behaviour."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    version: ClassVar[str | None] = None  # filled from the providing distribution when unset
    Params: ClassVar[type[BaseModel]] = NoParams
    # Why the plugin cannot take volumes (N, D, H, W, C), if it cannot; None: any image rank.
    no_volumes: ClassVar[str | None] = None

    def __init__(self, **params: Any):
        self.params = self.validate_params(params)

    # ---- declaration -------------------------------------------------------------------
    @classmethod
    def summary(cls) -> str:
        """The description, or the class docstring's first paragraph."""
        text = cls.description or textwrap.dedent(cls.__doc__ or "").strip()
        return text.split("\n\n")[0].replace("\n", " ").strip()

    @classmethod
    def schema(cls) -> dict:
        """JSON Schema of the parameters (what the web forms and the API read)."""
        schema = cls.Params.model_json_schema()
        schema.setdefault("title", cls.title or cls.name)
        return schema

    @classmethod
    def describe(cls) -> dict:
        return {
            "kind": cls.kind,
            "name": cls.name,
            "title": cls.title,
            "description": cls.summary(),
            "version": cls.version,
            "no_volumes": cls.no_volumes,
            "schema": cls.schema(),
        }

    @classmethod
    def check_declaration(cls) -> None:
        """Raise TypeError if the class does not follow the plugin contract."""
        who = f"{cls.__module__}.{cls.__qualname__}"
        if cls.kind not in KINDS:
            raise TypeError(f"{who}: kind must be one of {KINDS}, got {cls.kind!r}")
        if not isinstance(cls.name, str) or not _NAME_RULE.match(cls.name):
            raise TypeError(
                f"{who}: name {cls.name!r} must be lower-case words joined by '-', like 'pgd' "
                "or 'feature-squeezing'"
            )
        if not cls.title:
            raise TypeError(f"{who}: set a human-readable `title`")
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
            raise TypeError(f"{who}: `Params` must be a pydantic BaseModel subclass")
        if cls.Params.model_config.get("extra") != "forbid":
            raise TypeError(
                f"{who}: `Params` must refuse unknown fields: declare it with "
                '`class Params(BaseModel, extra="forbid")`'
            )

    # ---- parameters --------------------------------------------------------------------
    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> BaseModel:
        try:
            validated = cls.Params(**params)
        except ValidationError as exc:
            raise _parameter_error(cls, exc) from None
        # Configuration is frozen at creation (inputs are call arguments, never params).
        return validated.model_copy()

    def config(self) -> dict:
        """What replays this plugin: kind, name, version and the validated parameters."""
        return {
            "kind": self.kind,
            "plugin": self.name,
            "version": self.version,
            "params": self.params.model_dump(mode="json"),
        }

    def check_rank(self, clf) -> None:
        """Refuse, by name and with the reason, a volume model this plugin cannot handle."""
        if self.no_volumes and len(clf.input_shape) == 4:
            raise InputError(f"{self.kind} '{self.name}' cannot run on volumes (N, D, H, W, C) like "
                             f"{clf.name}'s: {self.no_volumes}")

    # ---- compiled functions, cached per classifier --------------------------------------
    def compiled(self, clf, build: Callable[[], Callable], name: str = "default", *,
                 autograph: bool = True):
        """build()'s function as a tf.function, compiled once per classifier and name (no
        retrace per batch). Attacks, detectors and defenses all keep their graphs here."""
        cache = self.__dict__.setdefault("_compiled_by_clf", weakref.WeakKeyDictionary())
        functions = cache.setdefault(clf, {})
        if name not in functions:
            functions[name] = batch_relaxed_function(build(), autograph=autograph)
        return functions[name]

    def forget_compiled(self) -> None:
        """Drop every compiled function: after a (re)fit none may keep old weights or state."""
        self.__dict__.pop("_compiled_by_clf", None)

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "params" and "params" in self.__dict__:
            raise AttributeError(
                f"{self.name}: parameters are fixed at creation; create a new plugin instead"
            )
        super().__setattr__(key, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"<{self.kind} {self.name}({args})>"


def _parameter_error(cls: type[Plugin], exc: ValidationError) -> ParameterError:
    fields = list(cls.Params.model_fields)
    lines, errors = [], []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(parameters)"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, fields, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            rule = f"unknown parameter; {cls.name} accepts: {', '.join(fields) or 'none'}.{hint}"
        else:
            rule = err["msg"]
        errors.append({"field": field, "rule": rule, "type": err["type"], "input": err.get("input")})
        shown = "" if err["type"] == "extra_forbidden" else f" (got {err.get('input')!r})"
        lines.append(f"  {field}: {rule}{shown}")
    message = f"{cls.kind} '{cls.name}': invalid parameters\n" + "\n".join(lines)
    return ParameterError(message, errors)
