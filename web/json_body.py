"""Request bodies as strict, bounded JSON.

Python's json module accepts what JSON does not (NaN, Infinity) and recurses on nesting, so a
hostile body could put NaN into the job store — after which the job list is no longer JSON — or
crash the parser with `[[[[…`. Here a body must be small enough, nested at most MAX_DEPTH deep,
and hold only JSON numbers; anything else is a 400 (not JSON) before any validation (422).
"""

from __future__ import annotations

import json
import re

import numpy as np

from .problems import Problem

MAX_BYTES = 1_000_000  # a job request is a few hundred bytes; a generous bound
MAX_DEPTH = 32
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def not_json(detail: str) -> Problem:
    return Problem(400, "Body is not JSON", detail, type="json-invalid")


def parse(raw: bytes | str, what: str = "the body") -> object:
    """The JSON value of `raw`, or a 400 problem that says what is wrong with it."""
    if len(raw) > MAX_BYTES:
        raise Problem(413, "Body too large", f"{what} has {len(raw)} bytes; at most {MAX_BYTES} are read",
                      type="body-too-large")
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise not_json(f"{what} is nested {depth} levels deep; at most {MAX_DEPTH} are accepted")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise not_json(f"{what} is not valid JSON: {exc}") from None


def nesting_depth(text: str) -> int:
    """How deep [ and { nest outside strings (vectorised: a long body costs no Python loop)."""
    bare = _STRING.sub('""', text).encode("utf-8", errors="replace")
    if not bare:
        return 0
    codes = np.frombuffer(bare, np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int32) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")
