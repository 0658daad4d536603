"""The plugin registry: finds plugins through the entry-point group "egide" and keeps them.

Built-in plugins come through the same entry points as third-party ones. Each entry point is
loaded in isolation: one that fails to import, uses an unknown hook name or registers a bad
class is recorded in `failures` and the others keep working. `EGIDE_STRICT_PLUGINS=1` turns
any failure into an error (for CI); `EGIDE_DISABLE_PLUGINS=a,b` skips entry points by name.
"""

from __future__ import annotations

import difflib
import os
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginConflictError, PluginLoadError, PluginNotFoundError
from .plugin import KINDS, Plugin

ENTRY_POINT_GROUP = "egide"
HOOK_KINDS = {
    "egide_register_attacks": "attack",
    "egide_register_defenses": "defense",
    "egide_register_detectors": "detector",
    "egide_register_datasets": "dataset",
    "egide_register_models": "model",
    "egide_register_model_formats": "model-format",
}


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin comes from: its entry point and the distribution that declares it."""

    entry_point: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"entry point '{self.entry_point}' ({dist})"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    entry_point: str
    distribution: str | None
    error: str
    details: str = ""  # the traceback, for `egide plugins --verbose`

    def to_dict(self) -> dict:
        return {"entry_point": self.entry_point, "distribution": self.distribution, "error": self.error}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _kind(kind: str) -> str:
    k = kind.rstrip("s") if kind.endswith("s") else kind
    if k not in KINDS:
        raise PluginNotFoundError(f"unknown plugin kind {kind!r}; use one of: {', '.join(KINDS)}")
    return k


class Registry:
    """Every plugin found, by kind and name, plus the ones that failed to load."""

    def __init__(self) -> None:
        self._classes: dict[str, dict[str, type[Plugin]]] = {k: {} for k in KINDS}
        self._sources: dict[tuple[str, str], PluginSource] = {}
        self._conflicts: dict[tuple[str, str], list[PluginSource]] = {}
        self.failures: list[PluginFailure] = []
        self.disabled: list[str] = []
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        strict: bool | None = None,
        disabled: Iterable[str] | None = None,
        entry_points: Iterable[metadata.EntryPoint] | None = None,
    ) -> "Registry":
        """Load every entry point of the group "egide" (environment settings by default)."""
        if strict is None:
            strict = _env_flag("EGIDE_STRICT_PLUGINS")
        if disabled is None:
            disabled = os.environ.get("EGIDE_DISABLE_PLUGINS", "").split(",")
        skip = {d.strip() for d in disabled if d.strip()}
        if entry_points is None:
            entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
        reg = cls()
        seen: set[tuple[str, str]] = set()
        for ep in sorted(entry_points, key=lambda e: (e.name, e.value)):
            if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            if ep.name in skip:
                reg.disabled.append(ep.name)
                continue
            reg._load_entry_point(ep)
        if strict and reg.failures:
            listing = "\n".join(f"  {f.entry_point}: {f.error}" for f in reg.failures)
            raise PluginLoadError(
                f"{len(reg.failures)} plugin(s) failed to load (EGIDE_STRICT_PLUGINS is set):\n{listing}"
            )
        return reg

    def _load_entry_point(self, ep: metadata.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        source = PluginSource(ep.name, dist.name if dist else None, dist.version if dist else None)
        try:
            module = ep.load()
        except Exception as exc:
            self._fail(source, f"import of '{ep.value}' failed: {type(exc).__name__}: {exc}")
            return
        self.register_module(module, source)

    def register_module(self, module: Any, source: PluginSource) -> bool:
        """Register the hooks of one plugin module; on any problem record a failure instead."""
        pm_name = f"{source.distribution or '-'}:{source.entry_point}"
        try:
            self._pm.register(module, name=pm_name)
            # A misspelt hook name would otherwise be ignored silently.
            self._pm.check_pending()
        except Exception as exc:
            if self._pm.is_registered(module):
                self._pm.unregister(module)
            self._fail(source, f"{type(exc).__name__}: {exc}")
            return False

        collected: list[type[Plugin]] = []
        try:
            found_hook = False
            for hook_name, kind in HOOK_KINDS.items():
                for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is not module:
                        continue
                    found_hook = True
                    impl.function(**{a: self._collector(kind, collected) for a in impl.argnames})
            if not found_hook:
                raise PluginLoadError(
                    f"it implements no egide hook ({', '.join(HOOK_KINDS)})"
                )
        except Exception as exc:
            self._pm.unregister(module)
            self._fail(source, f"{type(exc).__name__}: {exc}")
            return False

        for plugin_cls in collected:
            self._add(plugin_cls, source)
        return True

    def _collector(self, kind: str, collected: list):
        def register(plugin_cls):
            if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, Plugin)):
                raise TypeError(f"register() takes a Plugin subclass, got {plugin_cls!r}")
            plugin_cls.check_declaration()
            if plugin_cls.kind != kind:
                raise TypeError(
                    f"{plugin_cls.__name__} is a {plugin_cls.kind}, registered through the "
                    f"{kind} hook; register it from egide_register_{plugin_cls.kind}s"
                )
            collected.append(plugin_cls)

        return register

    def _add(self, plugin_cls: type[Plugin], source: PluginSource) -> None:
        key = (plugin_cls.kind, plugin_cls.name)
        if plugin_cls.version is None and source.version:
            plugin_cls.version = source.version
        if key in self._conflicts:
            self._conflicts[key].append(source)
            self._fail(source, self._conflict_message(key))
            return
        if key in self._sources:
            first = self._sources.pop(key)
            del self._classes[key[0]][key[1]]
            self._conflicts[key] = [first, source]
            self._fail(source, self._conflict_message(key))
            return
        self._classes[key[0]][key[1]] = plugin_cls
        self._sources[key] = source

    def _conflict_message(self, key: tuple[str, str]) -> str:
        who = " and ".join(str(s) for s in self._conflicts[key])
        return (
            f"{key[0]} '{key[1]}' is registered by both {who}; uninstall one, or disable "
            "one with EGIDE_DISABLE_PLUGINS=<entry point>"
        )

    def _fail(self, source: PluginSource, error: str) -> None:
        self.failures.append(
            PluginFailure(source.entry_point, source.distribution, error, traceback.format_exc())
        )

    # ---- lookup ------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self._classes[_kind(kind)])

    def plugins(self, kind: str | None = None) -> list[type[Plugin]]:
        kinds = KINDS if kind is None else (_kind(kind),)
        return [self._classes[k][n] for k in kinds for n in sorted(self._classes[k])]

    def get(self, kind: str, name: str) -> type[Plugin]:
        kind = _kind(kind)
        if name in self._classes[kind]:
            return self._classes[kind][name]
        if (kind, name) in self._conflicts:
            raise PluginConflictError(self._conflict_message((kind, name)))
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PluginNotFoundError(
            f"no {kind} named {name!r}.{hint} Known {kind}s: {', '.join(known) or 'none'}"
        )

    def source(self, kind: str, name: str) -> PluginSource:
        self.get(kind, name)
        return self._sources[(_kind(kind), name)]

    def create(self, kind: str, name: str, **params: Any) -> Plugin:
        """Create a plugin with validated parameters."""
        return self.get(kind, name)(**params)

    def describe(self) -> dict:
        """Every plugin by kind (with its JSON schema), plus the load failures."""
        return {
            "plugins": {
                k + "s": [
                    {**c.describe(), "source": str(self._sources[(k, c.name)])}
                    for c in self.plugins(k)
                ]
                for k in KINDS
            },
            "failures": [f.to_dict() for f in self.failures],
            "disabled": list(self.disabled),
        }


_default: Registry | None = None


def registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use (`reload=True` rescans entry points)."""
    global _default
    if _default is None or reload:
        _default = Registry.load()
    return _default
