"""Errors as RFC 9457 problem documents (`application/problem+json`).

Every error the API returns goes through `problem()`: a `type` URI, a `title`, the HTTP
`status`, a `detail` a person can act on, and for validation errors an `errors` list naming
each bad field by its location (`loc`, a list of keys; `pointer`, the same as a JSON Pointer).
"""

from __future__ import annotations

from typing import Any, Iterable

from flask import Response, json

PROBLEM_BASE = "urn:egide:problem:"
MEDIA_TYPE = "application/problem+json"
ECHO = 200  # characters of a bad input echoed back in a problem


class Problem(Exception):
    """Raise from a view to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", *, type: str | None = None,
                 errors: list[dict] | None = None, headers: dict | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.type = PROBLEM_BASE + type if type else "about:blank"
        self.errors, self.headers, self.extra = errors, headers or {}, extra

    def to_dict(self) -> dict:
        body = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def problem_response(p: Problem) -> Response:
    resp = Response(json.dumps(p.to_dict()), status=p.status, mimetype=MEDIA_TYPE)
    for key, value in p.headers.items():
        resp.headers[key] = value
    return resp


def field_error(loc: Iterable, msg: str, type: str = "value_error", input: Any = None) -> dict:
    loc = [p if isinstance(p, int) else str(p) for p in loc]
    entry = {
        "loc": loc,
        "pointer": "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in loc),
        "field": ".".join(str(p) for p in loc),
        "msg": msg,
        "type": type,
    }
    if input is not None and isinstance(input, (str, int, float, bool)):
        # Echo what was sent, but never much of it: an answer must not grow with a hostile body.
        entry["input"] = input if not isinstance(input, str) or len(input) <= ECHO else input[:ECHO] + "…"
    if len(msg) > 4 * ECHO:
        entry["msg"] = msg[: 4 * ECHO] + "…"
    return entry


def validation_problem(errors: list[dict], detail: str | None = None) -> Problem:
    if detail is None:
        detail = "; ".join(f"{e['field'] or '(body)'}: {e['msg']}" for e in errors)
    return Problem(422, "Invalid request", detail, type="validation-error", errors=errors)


def from_pydantic(exc, prefix: Iterable = ()) -> Problem:
    """A pydantic ValidationError as a 422 problem; `prefix` is prepended to each location."""
    errors = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        errors.append(field_error([*prefix, *err["loc"]], msg, err["type"], err.get("input")))
    return validation_problem(errors)


def from_parameter_error(exc, prefix: Iterable = ("params",)) -> Problem:
    """A plugin's ParameterError (raised when creating it) as a 422 problem."""
    errors = []
    for err in getattr(exc, "errors", []) or []:
        loc = [] if err["field"] == "(parameters)" else err["field"].split(".")
        errors.append(field_error([*prefix, *loc], err["rule"], err.get("type", "value_error"), err.get("input")))
    if not errors:  # a rule checked outside the model (e.g. an eps beyond the input range)
        errors.append(field_error(list(prefix), str(exc)))
    return validation_problem(errors, detail=str(exc))
