"""`egide serve`: the web lab in a real threaded server process, on the demo by default."""

from __future__ import annotations

from typing import Any


def serve(host: str, port: int, *, instance=None, token: str | None = None,
          workers: int | None = None) -> None:
    """Create the app and serve it until interrupted (the caller has checked host and token)."""
    from werkzeug.serving import run_simple

    from egide.lab.services import default_pair

    from . import create_app

    config: dict[str, Any] = {"EGIDE_BIND_HOST": host}
    if instance:
        config["EGIDE_INSTANCE_PATH"] = instance
    if token:
        config["EGIDE_API_TOKEN"] = token
    if workers is not None:
        config["EGIDE_WORKERS"] = workers
    app = create_app(config)
    # Load the preselected model and data now, in the background: the first job, from the page
    # or a script, then does not wait for the phantom to be generated.
    state = app.extensions["egide"]
    model, data = default_pair(state.registry.plugins("model"), state.registry.plugins("dataset"))
    state.resources.warm(model, data, "test")
    print(f"egide: serving on http://{host}:{port}/  (instance folder {app.instance_path})", flush=True)
    run_simple(host, port, app, threaded=True, use_reloader=False)
