"""Build real (unpacked) plugin distributions on disk, so the loader finds them by entry point.

A folder on sys.path holding `<name>.dist-info/entry_points.txt` is an installed distribution
as far as importlib.metadata is concerned: the same path pip-installed plugins take.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path


def write_plugin_dist(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                      version: str = "0.1") -> Path:
    """Write modules and a dist-info declaring `entry_points` (name -> module) in group egide."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[egide]\n{lines}\n")
    return root


class on_sys_path:
    """Put a folder on sys.path for the duration of a `with` block, and forget its modules."""

    def __init__(self, root: Path):
        self.root = str(root)

    def __enter__(self):
        sys.path.insert(0, self.root)
        importlib.invalidate_caches()
        self.before = set(sys.modules)
        return self

    def __exit__(self, *exc):
        sys.path.remove(self.root)
        for name in set(sys.modules) - self.before:
            module = sys.modules.get(name)
            if getattr(module, "__file__", "") and str(module.__file__).startswith(self.root):
                del sys.modules[name]
        importlib.invalidate_caches()
