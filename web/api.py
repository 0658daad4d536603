"""The JSON API, mounted at /api/v1. Every error is an RFC 9457 problem document."""

from __future__ import annotations

import difflib
import hmac
import json

from flask import Blueprint, current_app, request, send_from_directory, url_for
from pydantic import ValidationError

from egide.core.errors import EgideError, ParameterError, PluginNotFoundError
from egide.core.plugin import KINDS

from .jobs import QueueFull
from .problems import Problem, field_error, from_parameter_error, from_pydantic, validation_problem
from .schemas import AttackJob, EvaluateJob

api = Blueprint("api", __name__, url_prefix="/api/v1")


def state():
    return current_app.extensions["egide"]


@api.before_request
def _check_token():
    token = current_app.config.get("EGIDE_TOKEN")
    if not token:
        return None
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise Problem(
            401, "Unauthorized",
            "this server requires a token: send the header 'Authorization: Bearer <token>'",
            type="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="egide"'},
        )
    return None


# ---- plugins ---------------------------------------------------------------------------------
@api.get("/plugins")
def plugins():
    return state().registry.describe()


@api.get("/plugins/<kind>/<name>")
def plugin(kind: str, name: str):
    reg = state().registry
    kind_name = kind[:-1] if kind.endswith("s") else kind
    if kind_name not in KINDS:
        close = difflib.get_close_matches(kind_name, KINDS, n=1)
        raise Problem(404, "Unknown plugin kind", f"no plugin kind {kind!r}; kinds: {', '.join(KINDS)}",
                      type="unknown-plugin-kind", suggestion=close[0] if close else None)
    try:
        cls = reg.get(kind_name, name)
    except PluginNotFoundError as exc:
        close = difflib.get_close_matches(name, reg.names(kind_name), n=1, cutoff=0.5)
        raise Problem(404, "Unknown plugin", str(exc), type="unknown-plugin",
                      suggestion=close[0] if close else None) from None
    except EgideError as exc:  # a conflict between two installed plugins
        raise Problem(409, "Plugin conflict", str(exc), type="plugin-conflict") from None
    return {**cls.describe(), "source": str(reg.source(kind_name, name))}


# ---- models and data sets ------------------------------------------------------------------
# Built-in (named) ones for now. Uploaded models and data sets will be listed here too, with
# "source": "upload"; the job requests already refer to them only by name.
@api.get("/models")
def models():
    reg = state().registry
    return {"models": [_named(cls, "builtin") for cls in reg.plugins("model")]}


@api.get("/datasets")
def datasets():
    reg = state().registry
    return {"datasets": [
        {**_named(cls, "builtin"), "splits": list(getattr(cls, "splits", ()))}
        for cls in reg.plugins("dataset")
    ]}


def _named(cls, source: str) -> dict:
    return {"name": cls.name, "title": cls.title, "description": cls.summary(),
            "version": cls.version, "source": source}


# ---- jobs ------------------------------------------------------------------------------------
@api.post("/jobs")
def submit_job():
    body = _json_body()
    kind = body.get("kind") if isinstance(body, dict) else None
    if not isinstance(body, dict):
        raise validation_problem([field_error([], "the body must be a JSON object", "model_type")])
    if kind not in ("attack", "evaluate"):
        raise validation_problem([field_error(
            ["kind"], "must be 'attack' or 'evaluate'", "literal_error",
            kind if isinstance(kind, str) else None)])
    model = AttackJob if kind == "attack" else EvaluateJob
    try:
        job = model.model_validate(body)
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    request_doc = _check_attack(job) if kind == "attack" else _check_evaluation(job)
    try:
        job_id = state().runner.submit(kind, request_doc)
    except QueueFull:
        raise Problem(429, "Too many jobs", "the job queue is full; wait for a job to finish, "
                      "or cancel one, and submit again", type="queue-full",
                      headers={"Retry-After": "10"}) from None
    url = url_for("api.get_job", job_id=job_id)
    return {"id": job_id, "url": url, "state": "queued"}, 202, {"Location": url}


def _check_attack(job: AttackJob) -> dict:
    st = state()
    errors = _check_sources(job.model, job.data, job.split, job.limit, ())
    if errors:
        raise validation_problem(errors)
    try:
        st.registry.get("attack", job.plugin)
    except PluginNotFoundError as exc:
        raise validation_problem([field_error(["plugin"], str(exc), "unknown_plugin", job.plugin)]) from None
    try:
        attack = st.registry.create("attack", job.plugin, **job.params)  # the plugin validates
    except ParameterError as exc:
        raise from_parameter_error(exc) from None
    if "eps" in type(attack.params).model_fields:
        # An eps beyond the model's input range is a unit mistake: say so now, not in a failed
        # job. (Loads the model once; it stays cached for the jobs.)
        try:
            attack._check_budget(st.resources.classifier(job.model))
        except ParameterError as exc:
            raise validation_problem([field_error(["params", "eps"], str(exc), "budget", attack.params.eps)]) from None
    doc = job.model_dump(mode="json")
    doc["params"] = attack.params.model_dump(mode="json")
    if not attack.targeted and job.target is not None:
        raise validation_problem([field_error(["target"], "target labels need params.targeted = true")])
    return doc


def _check_evaluation(job: EvaluateJob) -> dict:
    from egide.core.evaluate import _check_attack as check_spec

    st = state()
    cfg = job.config
    errors = _check_sources(cfg.model, cfg.data, cfg.split, cfg.limit, ("config",))
    for i, spec in enumerate(cfg.attacks):
        try:
            check_spec(st.registry, spec)
        except PluginNotFoundError as exc:
            errors.append(field_error(["config", "attacks", i, "plugin"], str(exc), "unknown_plugin", spec.plugin))
        except ParameterError as exc:
            p = from_parameter_error(exc, ("config", "attacks", i, "params"))
            errors.extend(p.errors)
    if errors:
        raise validation_problem(errors)
    return job.model_dump(mode="json")


def _check_sources(model: str, data: str, split, limit, prefix: tuple) -> list[dict]:
    """Over the network only named models and data sets are accepted (never a server path)."""
    st = state()
    errors = []
    if model not in st.resources.model_names():
        errors.append(field_error([*prefix, "model"], _unknown("model", model, st.resources.model_names()),
                                  "unknown_model", model))
    if data not in st.resources.dataset_names():
        errors.append(field_error([*prefix, "data"], _unknown("data set", data, st.resources.dataset_names()),
                                  "unknown_dataset", data))
    else:
        splits = getattr(st.registry.get("dataset", data), "splits", ())
        if split is not None and splits and split not in splits:
            errors.append(field_error([*prefix, "split"], f"{data} has the splits {', '.join(splits)}",
                                      "unknown_split", split))
    most = current_app.config["EGIDE_MAX_IMAGES"]
    if limit is not None and limit > most:
        errors.append(field_error([*prefix, "limit"], f"at most {most} images per job on this server",
                                  "less_than_equal", limit))
    return errors


def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"no {what} named {name!r}.{hint} Known: {', '.join(known) or 'none'}"


def _json_body():
    raw = request.get_data(cache=False, as_text=True)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise validation_problem([field_error([], f"malformed JSON: {exc}", "json_invalid")]) from None


@api.get("/jobs")
def list_jobs():
    limit = request.args.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise validation_problem([field_error(["query", "limit"], "an integer from 1 to 500", "int_parsing", limit)])
    return {"jobs": [_public(j) for j in state().store.list(int(limit))]}


@api.get("/jobs/<job_id>")
def get_job(job_id: str):
    return _public(_job(job_id))


@api.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    job = _job(job_id)
    if job["state"] in ("queued", "running"):
        state().runner.cancel(job_id)
    return _public(state().store.get(job_id)), 202 if job["state"] == "running" else 200


@api.get("/jobs/<job_id>/artifacts/<name>")
def artifact(job_id: str, name: str):
    job = _job(job_id)
    if name not in job["artifacts"]:  # only what the job listed: never a path from the URL
        raise Problem(404, "No such artifact",
                      f"job {job_id} has the artifacts: {', '.join(job['artifacts']) or 'none (yet)'}",
                      type="unknown-artifact")
    return send_from_directory(state().job_dir / job_id, name, max_age=0)


def _job(job_id: str) -> dict:
    job = state().store.get(job_id)
    if job is None:
        raise Problem(404, "No such job", f"there is no job {job_id!r}", type="unknown-job")
    return job


def _public(job: dict) -> dict:
    progress = {"done": job["done"], "total": job["total"], "label": job["label"],
                "fraction": job["done"] / job["total"] if job["total"] else 0.0}
    return {
        "id": job["id"],
        "url": url_for("api.get_job", job_id=job["id"]),
        "kind": job["kind"],
        "state": job["state"],
        "request": job["request"],
        "created": job["created"],
        "started": job["started"],
        "finished": job["finished"],
        "progress": progress,
        "result": job["result"],
        "error": job["error"],
        "artifacts": {n: url_for("api.artifact", job_id=job["id"], name=n) for n in job["artifacts"]},
    }
