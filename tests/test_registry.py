"""The plugin loader: entry-point discovery, failure isolation, conflicts, strict mode."""

import pytest

import egide
from egide.core import ParameterError, PluginConflictError, PluginLoadError, PluginNotFoundError, Registry
from plugin_dists import on_sys_path, write_plugin_dist

GOOD = """
from pydantic import BaseModel, Field
from egide.core import Attack, hookimpl

class Shift(Attack):
    name = "{name}"
    title = "Shift everything up"
    class Params(BaseModel, extra="forbid"):
        eps: float = Field(0.1, gt=0, description="shift")
    def perturb(self, clf, x, y, target, seed):
        return x + self.params.eps

@hookimpl
def egide_register_attacks(register):
    register(Shift)
"""


def load_with(tmp_path, modules, entry_points, strict=False, **kwargs) -> Registry:
    """Load with a third-party distribution on the path; lenient unless asked (the suite itself
    runs with EGIDE_STRICT_PLUGINS=1; strict=None reads the environment)."""
    root = write_plugin_dist(tmp_path / "site", "third-party", modules, entry_points)
    with on_sys_path(root):
        return Registry.load(strict=strict, **kwargs)


def test_builtins_and_installed_plugins_come_through_entry_points():
    reg = Registry.load(strict=True, disabled=[])
    assert "fgsm" in reg.names("attack")
    assert reg.source("attack", "fgsm").distribution == "egide"
    # The example plugin under tests/plugins is a separately installed distribution.
    source = reg.source("attack", "example-noise")
    assert (source.distribution, source.version) == ("egide-example-plugin", "1.2.3")
    assert reg.get("attack", "example-noise").version == "1.2.3"
    assert "example-max-softmax" in reg.names("detector")


def test_a_new_distribution_is_discovered(tmp_path):
    reg = load_with(tmp_path, {"shift_plugin": GOOD.format(name="shift")}, {"shift": "shift_plugin"})
    assert "shift" in reg.names("attack") and "fgsm" in reg.names("attack")
    assert reg.source("attack", "shift").distribution == "third-party"
    assert reg.failures == []


def test_a_plugin_that_fails_to_import_is_recorded_and_the_rest_work(tmp_path):
    reg = load_with(
        tmp_path,
        {"broken_plugin": "import not_a_module_anywhere\n", "shift_plugin": GOOD.format(name="shift")},
        {"broken": "broken_plugin", "shift": "shift_plugin"},
    )
    assert "shift" in reg.names("attack") and "fgsm" in reg.names("attack")
    [failure] = reg.failures
    assert failure.entry_point == "broken" and failure.distribution == "third-party"
    assert "not_a_module_anywhere" in failure.error


def test_a_misspelt_hook_fails_loudly(tmp_path):
    source = GOOD.format(name="shift").replace("egide_register_attacks", "egide_register_atacks")
    reg = load_with(tmp_path, {"typo_plugin": source}, {"typo": "typo_plugin"})
    [failure] = reg.failures
    assert "egide_register_atacks" in failure.error
    assert "shift" not in reg.names("attack")


def test_a_hook_that_raises_registers_nothing(tmp_path):
    source = GOOD.format(name="shift") + """
class Other(Shift):
    name = "other"

@hookimpl
def egide_register_detectors(register):
    raise RuntimeError("detector setup exploded")
"""
    source = source.replace("    register(Shift)", "    register(Shift)\n    register(Other)")
    reg = load_with(tmp_path, {"half_plugin": source}, {"half": "half_plugin"})
    [failure] = reg.failures
    assert "detector setup exploded" in failure.error
    assert "shift" not in reg.names("attack") and "other" not in reg.names("attack")


@pytest.mark.parametrize(
    "change, message",
    [
        (('extra="forbid"', ""), "must refuse unknown fields"),
        (('name = "shift"', 'name = "Bad Name"'), "lower-case words"),
        (('title = "Shift everything up"', 'title = ""'), "title"),
        (("register(Shift)", "register(object)"), "Plugin subclass"),
    ],
)
def test_a_class_breaking_the_contract_is_refused(tmp_path, change, message):
    source = GOOD.format(name="shift").replace(*change)
    reg = load_with(tmp_path, {"bad_plugin": source}, {"bad": "bad_plugin"})
    [failure] = reg.failures
    assert message in failure.error


def test_a_module_without_hooks_is_a_failure(tmp_path):
    reg = load_with(tmp_path, {"empty_plugin": "x = 1\n"}, {"empty": "empty_plugin"})
    [failure] = reg.failures
    assert "implements no egide hook" in failure.error


def test_an_attack_registered_through_the_detector_hook_is_refused(tmp_path):
    source = GOOD.format(name="shift").replace("egide_register_attacks", "egide_register_detectors")
    reg = load_with(tmp_path, {"wrong_plugin": source}, {"wrong": "wrong_plugin"})
    [failure] = reg.failures
    assert "egide_register_attacks" in failure.error


def test_two_plugins_with_one_name_is_an_error_naming_both(tmp_path):
    reg = load_with(
        tmp_path,
        {"first_plugin": GOOD.format(name="twin"), "second_plugin": GOOD.format(name="twin")},
        {"first": "first_plugin", "second": "second_plugin"},
    )
    with pytest.raises(PluginConflictError) as info:
        reg.get("attack", "twin")
    assert "'first'" in str(info.value) and "'second'" in str(info.value)
    assert any("twin" in f.error for f in reg.failures)
    assert "fgsm" in reg.names("attack")  # the rest keep working


def test_shadowing_a_builtin_name_is_an_error_naming_both(tmp_path):
    reg = load_with(tmp_path, {"fake_plugin": GOOD.format(name="fgsm")}, {"fake": "fake_plugin"})
    with pytest.raises(PluginConflictError, match=r"'fgsm' .*third-party 0.1.*egide 0.1"):
        reg.create("attack", "fgsm")


def test_strict_mode_turns_failures_into_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("EGIDE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken.*not_a_module_anywhere"):
        load_with(tmp_path, {"broken_plugin": "import not_a_module_anywhere\n"}, {"broken": "broken_plugin"},
                  strict=None)


def test_disabled_plugins_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("EGIDE_DISABLE_PLUGINS", "broken, fgsm")
    reg = load_with(tmp_path, {"broken_plugin": "import not_a_module_anywhere\n"}, {"broken": "broken_plugin"})
    assert reg.failures == []
    assert "fgsm" not in reg.names("attack")
    assert sorted(reg.disabled) == ["broken", "fgsm"]


def test_unknown_names_suggest_the_closest(registry):
    with pytest.raises(PluginNotFoundError, match="Did you mean 'fgsm'"):
        registry.create("attack", "fgms")
    with pytest.raises(PluginNotFoundError, match="unknown plugin kind"):
        registry.names("attacker")


def test_parameter_errors_name_the_plugin_the_field_and_the_rule(registry):
    with pytest.raises(ParameterError) as info:
        registry.create("attack", "fgsm", eps=-0.1)
    text = str(info.value)
    assert "fgsm" in text and "eps" in text and "greater than 0" in text
    assert info.value.errors[0]["field"] == "eps"
    with pytest.raises(ParameterError, match="Did you mean 'eps'"):
        registry.create("attack", "fgsm", epsilon=0.1)


def test_parameters_are_frozen_after_creation(registry):
    atk = registry.create("attack", "fgsm", eps=0.1)
    with pytest.raises(Exception):
        atk.params.eps = 0.5
    with pytest.raises(AttributeError):
        atk.params = atk.Params(eps=0.5)
    assert atk.config() == {
        "kind": "attack", "plugin": "fgsm", "version": atk.version,
        "params": {"eps": 0.1, "norm": "inf", "targeted": False},
    }


def test_describe_lists_schemas_and_failures(tmp_path):
    reg = load_with(tmp_path, {"broken_plugin": "raise ImportError('boom')\n"}, {"broken": "broken_plugin"})
    doc = reg.describe()
    fgsm = next(p for p in doc["plugins"]["attacks"] if p["name"] == "fgsm")
    assert fgsm["schema"]["properties"]["eps"]["exclusiveMinimum"] == 0
    assert doc["failures"] == [{"entry_point": "broken", "distribution": "third-party", "error": "import of 'broken_plugin' failed: ImportError: boom"}]


def test_the_default_registry_is_shared():
    assert egide.registry() is egide.registry()
