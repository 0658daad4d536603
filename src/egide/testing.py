"""The plugin conformance suite, for built-ins and third-party plugin authors alike.

    from egide.testing import check_plugin
    check_plugin(MyAttack)
    with running_server(tmp_dir) as server: ...   # a real `egide serve`, for browser tests
"""

from egide.lab.conformance import Check, ConformanceError, check_plugin, default_fixture, plugin_checks
from egide.lab.server_process import running_server

__all__ = ["Check", "ConformanceError", "check_plugin", "default_fixture", "plugin_checks",
           "running_server"]
