"""What the command line and the server both do, written once so they behave the same.

    parse_number("4/255")          budgets and other numbers as people write them
    parse_param("eps=8/255")       one KEY=VALUE plugin parameter
    parse_range("0,255")           a model's input range
    targets("next", y, names)      the target labels of a targeted attack
    preprocessing_defense(...)     a defense to put in front of a model, refused if it trains
    attack_on(...)                 one attack run, measured on the real (defended) classifier
    is_loopback(host), check_exposure(host, token)   who may reach a server
    default_pair(models, data)     the model and data set a new user starts with
    default_model(reg), default_data(reg, model)   the same, for settings left out
    standard_attacks(reg), quick_attacks(reg)      the attacks of a standard evaluation
"""

from __future__ import annotations

import math

import dataclasses
import ipaddress
import json
from typing import Any

import numpy as np

from egide.core.classifier import Classifier
from egide.core.errors import InputError
from egide.core.preprocess import Preprocessor
from egide.core.results import AttackResult, attack_success


# ---- numbers and parameters ---------------------------------------------------------------
def parse_number(text: str) -> float:
    """'0.0157' or '4/255' -> a float; anything else is an error that shows both forms."""
    num, slash, den = str(text).strip().partition("/")
    try:
        return float(num) / float(den) if slash else float(num)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"not a number: {text!r} (write 0.0157 or 4/255)") from None


def parse_param(text: str) -> tuple[str, Any]:
    """'eps=8/255' -> ('eps', 0.0313...); values are JSON, a fraction, or plain text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--param expects KEY=VALUE, got {text!r}")
    raw = raw.strip()
    try:
        value: Any = json.loads(raw.lower() if raw.lower() in ("true", "false", "null") else raw)
    except json.JSONDecodeError:
        try:
            value = parse_number(raw) if "/" in raw else raw
        except InputError:
            value = raw
    return key.strip(), value


def parse_range(text: str | None, what: str = "--input-range", ordered: bool = True) -> tuple[float, float] | None:
    """'0,255' -> (0.0, 255.0): the pixel range a model expects; None or 'auto': read it from
    the model (a leading Rescaling/Normalization layer), else [0, 1]. ordered=False reads any
    pair of finite numbers (a DICOM window: centre, width)."""
    if text is None or text.strip().lower() == "auto":
        return None
    example = "LOW,HIGH such as 0,1 or 0,255 (or auto)" if ordered else "CENTRE,WIDTH such as 40,400"
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{what} expects {example}; got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or (ordered and not lo < hi):
        raise InputError(f"{what} {text}: LOW must be below HIGH, both finite" if ordered
                         else f"{what} {text}: both numbers must be finite")
    return lo, hi


def parse_normalize(text: str | None) -> tuple[list[float], list[float]] | None:
    """'0.485,0.456,0.406/0.229,0.224,0.225' -> ([means], [stds]): the per-channel (v - mean) / std
    an ONNX model expects after its input range (torchvision's Normalize); None: none."""
    if text is None or not text.strip():
        return None
    example = "MEAN/STD, one number per channel or one for all, e.g. 0.485,0.456,0.406/0.229,0.224,0.225"
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in text.split("/"))
    except ValueError:
        raise InputError(f"--normalize expects {example}; got {text!r}") from None
    if len(mean) != len(std) or not all(math.isfinite(v) for v in mean) or not all(v > 0 and math.isfinite(v)
                                                                                  for v in std):
        raise InputError(f"--normalize {text}: as many means as stds, every std positive ({example})")
    return mean, std


# ---- targets ------------------------------------------------------------------------------
def targets(spec, y: np.ndarray, class_names, targeted: bool) -> np.ndarray | None:
    """The target label of every image for a targeted attack; None for an untargeted one.

    spec: a class index, a class name, or 'next' ((y + 1) mod K); a targeted attack given no
    spec aims at 'next'. A spec for an untargeted attack is an error, not silently ignored.
    """
    names = list(class_names)
    if not targeted:
        if spec is not None:
            raise InputError(
                f"a target ({spec!r}) was given to an untargeted attack; create it with "
                "targeted=True to aim at it"
            )
        return None
    if spec is None or spec == "next":
        return ((y + 1) % len(names)).astype(np.int64)
    if isinstance(spec, str) and spec in names:
        return np.full(len(y), names.index(spec), np.int64)
    try:
        index = int(spec)
    except (TypeError, ValueError):
        index = -1
    if not (0 <= index < len(names)) or isinstance(spec, bool):
        raise InputError(
            f"target {spec!r} is neither a class index (0..{len(names) - 1}), a class name "
            f"({', '.join(names)}) nor 'next'"
        )
    return np.full(len(y), index, np.int64)


# ---- attacking through a defense ----------------------------------------------------------
def preprocessing_defense(registry, name: str, params: dict):
    """The preprocessor `name` with its parameters (validated now, before any model loads);
    a trainer is refused with the command that runs it instead."""
    defense = registry.create("defense", name, **params)
    if not isinstance(defense, Preprocessor):
        raise InputError(
            f"defense '{name}' trains a new model rather than preprocessing inputs: run "
            f"`egide defend --defense {name} ...` (or a defend job) first, then attack its output"
        )
    return defense


def measured_on(real: Classifier, result: AttackResult, x: np.ndarray, first_batch: int = 0) -> AttackResult:
    """The result as the real classifier answers it. When an adaptive view (BPDA's stand-in,
    EOT's average) was attacked, that is only how the attacker saw the defense: predictions,
    success and robust accuracy must be the real defended classifier's. A randomized defense
    draws for each image from (seed, its place in the run), as the attack did."""
    size = result.batch_size
    real.reseed(result.seed, first_batch * size)  # a shard's images keep their place in the run
    y_pred = real.predict(x, size)
    y_pred_adv = real.predict(result.x_adv, size)
    success = attack_success(result.y, y_pred, y_pred_adv, result.target)
    return dataclasses.replace(result, y_pred=y_pred, y_pred_adv=y_pred_adv, success=success)


def attack_on(attack, real: Classifier, attacked: Classifier, x, y, *, target=None,
              batch_size: int | None = None, seed: int = 0, progress=None) -> AttackResult:
    """Run `attack` on `attacked` (the real classifier, or a defense's adaptive view of it) and
    measure the result on `real`."""
    result = attack.run(attacked, x, y, target=target, batch_size=batch_size, seed=seed,
                        progress=progress)
    return result if attacked is real else measured_on(real, result, x)


# ---- who may reach a server ---------------------------------------------------------------
def is_loopback(host: str | None) -> bool:
    """True for 'localhost' and loopback addresses (IPv4, IPv6, with or without a zone)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to bind beyond loopback without a token: anyone reaching it could run jobs."""
    if not is_loopback(host) and not token:
        raise InputError(
            f"refusing to bind {host} without a token: anyone who can reach it could run jobs; "
            "set --token (or EGIDE_API_TOKEN), or bind 127.0.0.1"
        )


# ---- what a new user starts with ------------------------------------------------------------
def default_pair(models, datasets) -> tuple[str | None, str | None]:
    """The model and data set preselected for a new user: the first model that declares an
    installed data set (`ModelSource.dataset`: the demo's pairing), with it; else the first of
    each. `models` and `datasets` are plugin classes or anything with `.name`."""
    data_names = [c.name for c in datasets]
    for cls in models:
        declared = getattr(cls, "dataset", None)
        if declared in data_names:
            return cls.name, declared
    return (models[0].name if models else None), (data_names[0] if data_names else None)


def default_model(registry) -> str:
    """The model used when none is named: the preselected one (the installed demo)."""
    model, _ = default_pair(registry.plugins("model"), registry.plugins("dataset"))
    if model is None:
        raise InputError("no model given, and no named model is installed: name a .keras file")
    return model


def default_data(registry, model: str | None) -> str:
    """The data set used when none is named: the one `model` declares, else the preselected one."""
    if model in registry.names("model"):
        declared = getattr(registry.get("model", model), "dataset", None)
        if declared in registry.names("dataset"):
            return declared
    _, data = default_pair(registry.plugins("model"), registry.plugins("dataset"))
    if data is None:
        raise InputError("no data set given, and no named data set is installed: name a file or folder")
    return data


def standard_attacks(registry) -> list[tuple[str, dict]]:
    """(name, params) of each attack in a standard evaluation, as each declares it
    (`Attack.evaluation`): single-step first, then iterative, other fixed-budget, minimal
    perturbation; by name within each group."""
    chosen = [cls for cls in registry.plugins("attack") if cls.evaluation is not None]
    chosen.sort(key=lambda cls: (_kind_rank(cls), cls.name))
    return [(cls.name, dict(cls.evaluation)) for cls in chosen]


def quick_attacks(registry) -> list[str]:
    """What a page preselects for a first evaluation: the single-step attacks of the standard
    evaluation and its first iterative one (seconds, not minutes, on the demo)."""
    names = [name for name, _ in standard_attacks(registry)]
    single = [n for n in names if registry.get("attack", n).single_step]
    iterative = [n for n in names if registry.get("attack", n).iterative]
    return single + iterative[:1]


def _kind_rank(cls) -> int:
    if cls.single_step:
        return 0
    if cls.iterative:
        return 1
    return 2 if cls.budget == "fixed" else 3
