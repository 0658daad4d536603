"""The plugin conformance suite, for built-ins and third-party plugin authors alike.

    from egide.testing import check_plugin
    check_plugin(MyAttack)
"""

from egide.core.conformance import Check, ConformanceError, check_plugin, default_fixture, plugin_checks

__all__ = ["Check", "ConformanceError", "check_plugin", "default_fixture", "plugin_checks"]
