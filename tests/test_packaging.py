"""The distribution: one import package `egide`, built-ins declared as entry points."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    [path] = out.glob("egide-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_only_the_egide_package(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"egide", next(t for t in tops if t.endswith(".dist-info"))}
    names = set(wheel.namelist())
    for module in ("egide/core/registry.py", "egide/plugins/attacks/fgsm.py", "egide/web/__init__.py",
                   "egide/testing.py", "egide/datasets.py"):
        assert module in names


def test_wheel_holds_every_module_of_every_layer(wheel):
    """A new sub-package left out of pyproject's list would install without its modules."""
    names = set(wheel.namelist())
    layers = {"core": "egide/core", "lab": "egide/lab", "plugins": "egide/plugins", "web": "egide/web"}
    missing = [str(path.relative_to(ROOT)) for folder, prefix in layers.items()
               for path in (ROOT / folder).rglob("*.py")
               if f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}" not in names]
    assert missing == []


def test_wheel_declares_builtins_as_entry_points_and_the_cli(wheel):
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(info).decode()
    assert "[egide]" in text and "fgsm = egide.plugins.attacks.fgsm" in text
    assert "egide = egide.lab.cli:main" in text


def test_every_builtin_plugin_module_has_an_entry_point():
    text = (ROOT / "pyproject.toml").read_text()
    for module in sorted((ROOT / "plugins").glob("*/*.py")):
        if not module.name.startswith("_"):  # _helpers.py are shared code, not plugins
            dotted = f"egide.plugins.{module.parent.name}.{module.stem}"
            assert f'"{dotted}"' in text, f"{dotted} is not declared as an entry point"
