"""`egide serve`: the web lab in a production WSGI server (waitress), on the demo by default.

Why waitress (docs/decisions.md): pure Python on every platform (gunicorn has no Windows), one
process — so the job runner, the cached models and the fitted detectors are shared by every
request without a second copy of TensorFlow per worker — a bounded thread pool, bounded request
bodies and header sizes, and timeouts for idle or slow clients. Werkzeug's development server
has none of these bounds."""

from __future__ import annotations

from typing import Any


THREADS = 8  # requests served at once; jobs run on the runner's own workers
CHANNEL_TIMEOUT_S = 60  # an idle or stalled client connection is closed after this
MAX_BODY = 256 * 1024 * 1024  # no request body above this is read (uploads have their own, lower, bounds)


def serve(host: str, port: int, *, instance=None, token: str | None = None,
          workers: int | None = None) -> None:
    """Create the app and serve it until interrupted (the caller has checked host and token)."""
    import waitress

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
    waitress.serve(app, host=host, port=port, threads=THREADS, channel_timeout=CHANNEL_TIMEOUT_S,
                   max_request_body_size=MAX_BODY, ident="egide", _quiet=True)
