"""The Flask server: a JSON API (/api/v1) and the lab page (/), over the same plugin registry.

    egide serve --port 8000            # or: flask --app egide.web run
    app = create_app({"EGIDE_INSTANCE_PATH": "/tmp/lab", "EGIDE_WORKERS": 1})

Configuration comes from `config` and from `EGIDE_*` environment variables (the config wins):

    EGIDE_INSTANCE_PATH  folder for the job store (jobs.sqlite3) and job artifacts
                         (default: ./egide-instance, in the current directory)
    EGIDE_API_TOKEN      when set, the API wants `Authorization: Bearer <token>` on every request
                         (EGIDE_TOKEN is an older alias; EGIDE_API_TOKEN wins). Without a token,
                         state-changing requests (POST/DELETE) from beyond loopback are refused.
    EGIDE_WORKERS        worker threads running jobs (default 1: TensorFlow uses every core)
    EGIDE_QUEUE_SIZE     jobs that may wait (default 16; more is a 429)
    EGIDE_MAX_IMAGES     images one job may process (default 2048)
    EGIDE_MAX_UPLOAD_BYTES     largest /predict request body (default 10 MB; more is a 413)
    EGIDE_MAX_PIXELS           largest uploaded image, in pixels (default 16 MP, 4096x4096; more is a 413)
    EGIDE_MAX_PREDICT_PIXELS   most pixels the images of one /predict request hold together (default 32 MP)
    EGIDE_PREDICT_CONCURRENCY  /predict requests decoding and classifying at once (default 2); more
                               wait up to EGIDE_PREDICT_WAIT_S (default 10 s), then get a 503
                               with Retry-After
    EGIDE_MAX_PREDICT_IMAGES   images one /predict request may hold (default 64)
    EGIDE_MAX_MODEL_BYTES      largest uploaded model (default 200 MB)
    EGIDE_MAX_MODEL_INPUT      most input values per image of an uploaded model (default 2048x2048x3)
    EGIDE_MAX_MODEL_PARAMS     most weights of an uploaded model (default 200 M)
    EGIDE_MAX_MODEL_ACTIVATIONS most activation values per image of an uploaded model (default 64 M,
                               256 MB per image in float32): a 16 KB file can declare a huge input
    EGIDE_MAX_DATASET_BYTES    largest uploaded data set (default 200 MB)
    EGIDE_MAX_DATASET_FILES    most entries in an uploaded zip (default 20000)
    EGIDE_MAX_DATASET_UNPACKED most bytes an uploaded zip may unpack to (default 1 GB)
    EGIDE_MAX_DATASET_PIXELS   most pixels the images of an uploaded zip may hold (default 250 M)
    EGIDE_DETECTOR_FIT_IMAGES  train images a /predict detector is fitted on, the first time it is
                               asked for (default 512; a supervised detector also gets PGD examples
                               of each). The fit runs in the background, one at a time: until it is
                               done /predict answers 503 with Retry-After, never waiting for it.
                               Fitted detectors are saved under <instance>/detectors/.
    EGIDE_DETECTORS_KEPT       fitted detectors kept in memory (default 8, least recently used
                               dropped first; they reload from disk)
    EGIDE_RAY_ADDRESS    run the attacks of evaluation and attack jobs on this Ray cluster ("local":
                         one started on this machine); the job store, artifacts and page are
                         unchanged. A restart marks the jobs it had running interrupted (re-run them)
    EGIDE_RAY_GPUS_PER_TASK    GPUs each Ray task (a batch of images) holds, e.g. 0.25 (default 0: CPUs)
    EGIDE_ALLOWED_HOSTS  more Host names the server answers to, comma-separated (loopback names
                         and the address it is bound to always are; any other Host is refused,
                         against DNS rebinding). Browsers may change state only from the
                         server's own page (Origin / Sec-Fetch-Site), scripts from anywhere
                         the token (or loopback) allows.

The app's state (registry, job store, runner, cached models and data) is one `EgideState` in
`app.extensions["egide"]`; nothing is global.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

DEFAULTS: dict[str, Any] = {
    "EGIDE_INSTANCE_PATH": None,
    "EGIDE_TOKEN": None,
    "EGIDE_WORKERS": 1,
    "EGIDE_RAY_ADDRESS": None,
    "EGIDE_RAY_GPUS_PER_TASK": 0,
    "EGIDE_QUEUE_SIZE": 16,
    "EGIDE_MAX_IMAGES": 2048,
    "EGIDE_MAX_UPLOAD_BYTES": 10 * 1024 * 1024,
    "EGIDE_MAX_PIXELS": 16_777_216,
    "EGIDE_MAX_PREDICT_PIXELS": 33_554_432,
    "EGIDE_PREDICT_CONCURRENCY": 2,
    "EGIDE_PREDICT_WAIT_S": 10,
    "EGIDE_MAX_PREDICT_IMAGES": 64,
    "EGIDE_MAX_MODEL_BYTES": 200 * 1024 * 1024,
    "EGIDE_MAX_DATASET_BYTES": 200 * 1024 * 1024,
    "EGIDE_MAX_DATASET_FILES": 20_000,
    "EGIDE_MAX_DATASET_UNPACKED": 1024 * 1024 * 1024,
    "EGIDE_MAX_DATASET_PIXELS": 250_000_000,
    "EGIDE_DETECTOR_FIT_IMAGES": 512,
    "EGIDE_DETECTORS_KEPT": 8,
    "EGIDE_MAX_MODEL_INPUT": 2048 * 2048 * 3,
    "EGIDE_MAX_MODEL_PARAMS": 200_000_000,
    "EGIDE_MAX_MODEL_ACTIVATIONS": 64_000_000,
    "EGIDE_ALLOWED_HOSTS": "",
    "EGIDE_BIND_HOST": None,
}


@dataclass
class EgideState:
    registry: Any  # egide.core.Registry
    store: Any  # jobs.JobStore
    runner: Any  # jobs.JobRunner
    resources: Any  # resources.Resources
    job_dir: Path
    predict_slots: Any = None  # threading.BoundedSemaphore: /predict work at once


def settings(config: dict | None = None, environ=os.environ) -> dict:
    """DEFAULTS, overridden by EGIDE_* environment variables, overridden by `config`."""
    out = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        if key in environ and environ[key] != "":
            value = environ[key]
            if isinstance(default, int):
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(f"{key} must be an integer, got {value!r}") from None
            out[key] = value
    config = dict(config or {})
    api_token = config.pop("EGIDE_API_TOKEN", None) or environ.get("EGIDE_API_TOKEN") or None
    if api_token and not config.get("EGIDE_TOKEN"):
        out["EGIDE_TOKEN"] = api_token
    out.update(config)
    out["EGIDE_API_TOKEN"] = out["EGIDE_TOKEN"]  # one token, under both names
    return out


def create_app(config: dict | None = None) -> Flask:
    from egide.core.registry import Registry

    from .api import api
    from .jobs import JobRunner, JobStore
    from .pages import pages
    from .problems import Problem, problem_response
    from .resources import Resources
    from .work import run_job

    cfg = settings(config)
    instance = cfg["EGIDE_INSTANCE_PATH"] or "egide-instance"
    app = Flask(__name__, instance_path=str(Path(instance).expanduser().resolve()))
    app.config.update(cfg)
    app.json.sort_keys = False
    instance_path = Path(app.instance_path)
    instance_path.mkdir(parents=True, exist_ok=True)
    job_dir = instance_path / "jobs"
    job_dir.mkdir(exist_ok=True)

    registry = cfg.get("EGIDE_REGISTRY") or Registry.load()
    store = JobStore(instance_path / "jobs.sqlite3")
    interrupted = store.mark_interrupted()
    if interrupted:
        app.logger.warning("%d job(s) of a previous run marked interrupted", interrupted)
    from .uploads import Uploads

    uploads = Uploads(instance_path / "uploads")
    resources = Resources(registry, uploads, detector_dir=instance_path / "detectors",
                          detector_images=max(1, int(cfg["EGIDE_DETECTOR_FIT_IMAGES"])),
                          detectors_kept=int(cfg["EGIDE_DETECTORS_KEPT"]),
                          ray_address=cfg["EGIDE_RAY_ADDRESS"],
                          ray_gpus=float(cfg["EGIDE_RAY_GPUS_PER_TASK"] or 0))
    runner = JobRunner(
        store,
        lambda job, progress: run_job(resources, job_dir, job, progress),
        workers=int(cfg["EGIDE_WORKERS"]),
        queue_size=max(1, int(cfg["EGIDE_QUEUE_SIZE"])),
    )
    import threading

    app.extensions["egide"] = EgideState(registry, store, runner, resources, job_dir,
                                         threading.BoundedSemaphore(max(1, int(cfg["EGIDE_PREDICT_CONCURRENCY"]))))

    app.register_blueprint(api)
    app.register_blueprint(pages)
    from egide.lab.report.model import eps_key

    app.jinja_env.filters["budget_text"] = eps_key  # budgets as the report writes them: 8/255

    from .origin_guard import check_request

    app.before_request(check_request)

    @app.errorhandler(Problem)
    def _problem(exc: Problem):
        return problem_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        from flask import request

        if not request.path.startswith("/api/"):
            return exc
        # Keep what HTTP says must come with the status (Allow on a 405, Retry-After...).
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return problem_response(Problem(exc.code or 500, exc.name, exc.description or "", headers=headers))

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        from egide.core.errors import EgideError
        from flask import request

        if isinstance(exc, HTTPException):
            return _http(exc)
        if isinstance(exc, EgideError):  # a user error that escaped a check: still a 4xx
            return problem_response(Problem(422, "Invalid request", str(exc), type="invalid-input"))
        app.logger.exception("unhandled error on %s", request.path)
        return problem_response(Problem(500, "Internal Server Error", "a bug in egide; see the server log"))

    return app
