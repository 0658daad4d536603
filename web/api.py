"""The JSON API, mounted at /api/v1. Every error is an RFC 9457 problem document."""

from __future__ import annotations

import difflib
import hmac
import shutil

import numpy as np
from flask import Blueprint, current_app, request, send_from_directory, url_for

from egide.core.classifier import softmax
from egide.core.errors import EgideError, InputError, ParameterError, PluginNotFoundError
from egide.core.plugin import KINDS

from egide.lab import services
from egide.lab.services import is_loopback

from . import json_body
from . import predict as pred
from .jobs import QueueFull
from .problems import Problem, field_error, from_parameter_error, validation_problem
from .job_checks import unknown, validated_job
from .resources import FitsBusy

api = Blueprint("api", __name__, url_prefix="/api/v1")


def state():
    return current_app.extensions["egide"]


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


PUBLIC = frozenset({"api.openapi", "api.docs"})  # the API's description holds no data


@api.before_request
def _check_token():
    if request.endpoint in PUBLIC:
        return None
    token = current_app.config.get("EGIDE_TOKEN") or current_app.config.get("EGIDE_API_TOKEN")
    if not token:
        # No token configured: only a caller on this machine may change state.
        if request.method in STATE_CHANGING and not is_loopback(request.remote_addr):
            raise Problem(
                403, "Forbidden",
                "this server has no token set, so it accepts POST and DELETE only from loopback; "
                "start it with EGIDE_API_TOKEN set to accept them from elsewhere",
                type="token-not-configured",
            )
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
# Built-in (named) ones, then uploaded ones ("source": "upload"); jobs and /predict refer to
# either only by name, never by a server path.
@api.get("/models")
def models():
    st = state()
    return {"models": [_named(cls, "builtin") for cls in st.registry.plugins("model")]
            + [_uploaded(m) for m in st.resources.uploads.models()]}


@api.get("/datasets")
def datasets():
    st = state()
    return {"datasets": [
        {**_named(cls, "builtin"), "splits": list(getattr(cls, "splits", ()))}
        for cls in st.registry.plugins("dataset")
    ] + [{**_uploaded(d), "splits": list(d.get("splits") or ())} for d in st.resources.uploads.datasets()]}


def _uploaded(meta: dict) -> dict:
    out = {"name": meta["name"], "title": meta["title"], "description": f"uploaded as {meta['filename']}",
           "version": None, "source": "upload"}
    for key in ("input_shape", "num_classes", "input_range", "input_range_source", "class_names",
                "image_shape", "images", "created", "data", "made_by", "mixed_sizes", "normalize", "conversion"):
        if key in meta:
            out[key] = meta[key]
    return out


def _upload_file(limit_key: str):
    from werkzeug.exceptions import RequestEntityTooLarge

    limit = int(current_app.config[limit_key])
    request.max_content_length = limit + 64 * 1024  # the multipart envelope around the file
    try:
        files = request.files.getlist("file")
        form = request.form
    except RequestEntityTooLarge:
        raise Problem(413, "Upload too large", f"at most {limit} bytes per upload",
                      type="upload-too-large") from None
    if len(files) != 1 or not files[0].filename:
        raise validation_problem([field_error(["file"], "send exactly one file in the multipart field 'file'",
                                              "missing")])
    return files[0], form, limit


@api.post("/models")
def upload_model():
    """Multipart `file`: a .keras or .h5 model (loaded in Keras safe mode), or an .onnx one (converted,
    checked against onnxruntime); optional `class_names`, `input_range` ("0,255"; empty or "auto":
    read from the model, else 0,1) and, for ONNX, `normalize` ("0.485,0.456,0.406/0.229,0.224,0.225")."""
    file, form, limit = _upload_file("EGIDE_MAX_MODEL_BYTES")
    st = state()
    names = [n.strip() for n in (form.get("class_names") or "").split(",") if n.strip()]
    try:
        input_range = services.parse_range(form.get("input_range") or None)
    except InputError as exc:
        raise validation_problem([field_error(["input_range"], str(exc).replace("--input-range", "input_range"),
                                              "value_error", form.get("input_range"))]) from None
    try:
        normalize = services.parse_normalize(form.get("normalize") or None)
    except InputError as exc:
        raise validation_problem([field_error(["normalize"], str(exc).replace("--normalize", "normalize"),
                                              "value_error", form.get("normalize"))]) from None
    cfg = current_app.config
    meta, clf = st.resources.uploads.add_model(file, limit, input_range, {
        "input": int(cfg["EGIDE_MAX_MODEL_INPUT"]), "params": int(cfg["EGIDE_MAX_MODEL_PARAMS"]),
        "activations": int(cfg["EGIDE_MAX_MODEL_ACTIVATIONS"])}, normalize)
    if names:
        if len(names) != clf.num_classes:
            st.resources.uploads.remove_model(meta)
            raise validation_problem([field_error(["class_names"], f"the model outputs {clf.num_classes} "
                                                  f"classes, {len(names)} names given", "length")])
        meta["class_names"] = names
        st.resources.uploads.update(meta, "model")
    st.resources.remember(meta["name"], clf)
    return _uploaded(meta), 201, {"Location": url_for("api.models")}


@api.post("/datasets")
def upload_dataset():
    """Multipart `file`: an .npz (allow_pickle=False) or a zip of class folders of PNG/JPEG images, DICOM files or NIfTI volumes."""
    file, _, limit = _upload_file("EGIDE_MAX_DATASET_BYTES")
    cfg = current_app.config
    meta = state().resources.uploads.add_dataset(
        file, limit, int(cfg["EGIDE_MAX_DATASET_FILES"]), int(cfg["EGIDE_MAX_DATASET_UNPACKED"]),
        int(cfg["EGIDE_MAX_PIXELS"]), int(cfg["EGIDE_MAX_DATASET_PIXELS"]))
    return {**_uploaded(meta), "splits": meta["splits"]}, 201, {"Location": url_for("api.datasets")}


def _named(cls, source: str) -> dict:
    return {"name": cls.name, "title": cls.title, "description": cls.summary(),
            "version": cls.version, "source": source}


# ---- the API's own description ---------------------------------------------------------------
@api.get("/openapi.json")
def openapi():
    return _openapi_doc()


def _openapi_doc() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .openapi import document

    try:
        v = version("egide")
    except PackageNotFoundError:
        v = "0.1.0"
    st = state()
    return document(st.registry, v, names={"model": st.resources.model_names(),
                                           "dataset": st.resources.dataset_names()})


@api.get("/docs")
def docs():
    from flask import render_template
    from markupsafe import Markup

    from .openapi import operations

    doc = _openapi_doc()

    def schema_link(schema: dict) -> Markup:
        def one(s: dict) -> Markup:
            ref = s.get("$ref", "")
            if ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                return Markup('<a href="#schema-{0}"><code>{0}</code></a>').format(name)
            return Markup("<code>{}</code>").format(s.get("type", "object"))
        if "oneOf" in schema:
            return Markup(" or ").join(one(s) for s in schema["oneOf"])
        return one(schema)

    return render_template("api_docs.html", doc=doc, ops=list(operations(doc)), schema_link=schema_link)


# ---- predict -----------------------------------------------------------------------------------
@api.post("/predict")
def predict():
    """Multipart: one or more `image` files (PNG, JPEG, DICOM, NIfTI or .npy floats in [0, 1]) and a `model`;
    a model of volumes takes NIfTI volumes or .npy arrays (D, H, W[, C]), each read whole."""
    from werkzeug.exceptions import RequestEntityTooLarge

    cfg = current_app.config
    request.max_content_length = int(cfg["EGIDE_MAX_UPLOAD_BYTES"])
    try:
        files = request.files.getlist("image")
        form = request.form
    except RequestEntityTooLarge:
        raise Problem(413, "Upload too large", f"a /predict request may hold at most "
                      f"{cfg['EGIDE_MAX_UPLOAD_BYTES']} bytes", type="upload-too-large") from None
    st = state()
    model = form.get("model") or services.default_model(st.registry)
    errors = []
    if model not in st.resources.model_names():
        errors.append(field_error(["model"], unknown("model", model, st.resources.model_names()),
                                  "unknown_model", model))
    most = int(cfg["EGIDE_MAX_PREDICT_IMAGES"])
    if not files:
        errors.append(field_error(["image"], "send one or more files in the multipart field 'image'",
                                  "missing"))
    elif len(files) > most:
        errors.append(field_error(["image"], f"at most {most} images per request on this server",
                                  "too_long", len(files)))
    detector = form.get("detector") or None
    reference_data = form.get("reference_data") or None
    if reference_data and reference_data not in st.resources.dataset_names():
        errors.append(field_error(["reference_data"], unknown("data set", reference_data,
                                                               st.resources.dataset_names()),
                                  "unknown_dataset", reference_data))
    detector_params = _detector_params(form.get("detector_params"), errors) if detector else {}
    if detector:
        installed = st.registry.names("detector")
        if detector not in installed:
            msg = unknown("detector", detector, installed) if installed else "no detectors are installed"
            errors.append(field_error(["detector"], msg, "unknown_plugin", detector))
        elif detector_params is not None:
            try:
                detector_params = st.registry.create("detector", detector, **detector_params).params.model_dump(
                    mode="json")
            except ParameterError as exc:
                errors.extend(from_parameter_error(exc, ("detector_params",)).errors)
        if not errors and (reference_data or st.resources.training_data(model)) is None:
            errors.append(field_error(["reference_data"], f"a detector is fitted on held-out images of {model}'s "
                                      "data, and which data that is is unknown for this model: name a data set "
                                      "(uploaded or built in) in reference_data", "missing", detector))
    elif form.get("detector_params"):
        errors.append(field_error(["detector_params"], "detector parameters need a detector", "missing"))
    if errors:
        raise validation_problem(errors)

    clf = st.resources.classifier(model)
    if not st.predict_slots.acquire(timeout=float(cfg["EGIDE_PREDICT_WAIT_S"])):  # decoding is memory: a bounded number at once
        raise Problem(503, "Busy", "too many /predict requests at once; retry in a moment",
                      type="busy", headers={"Retry-After": "1"})
    try:
        x, sizes, names = _decoded(files, clf, model, cfg)
        logits = clf.predict_logits(x, batch_size=64)
    finally:
        st.predict_slots.release()
    shape = clf.input_shape
    probs = softmax(logits)
    guarded, info = None, None
    if detector:
        from egide.lab.guard import Guard

        try:
            det, fitting = st.resources.detector_or_fit(model, detector, detector_params, reference_data)
        except FitsBusy as exc:
            raise Problem(429, "Too many detector fits", str(exc), type="detector-fits-busy",
                          headers={"Retry-After": "10"}) from None
        except EgideError:
            raise  # a user error (e.g. a data set that does not fit the model): a 422
        except Exception as exc:  # a broken detector plugin: say which, keep serving
            current_app.logger.exception("detector %s failed to fit to %s", detector, model)
            raise Problem(500, "Detector failed", f"detector {detector!r} could not be fitted to {model!r}: "
                          f"{type(exc).__name__}: {exc}", type="detector-failed") from None
        if det is None:  # being fitted in the background: the request does not wait for it
            raise Problem(503, "Detector being fitted",
                          f"detector {detector!r} is being fitted to {model!r} ({fitting:.0f} s so far); "
                          "send the request again in a few seconds", type="detector-fitting",
                          headers={"Retry-After": "5"}, fitting_seconds=round(fitting, 1))
        guarded = Guard(clf, det)(x, batch_size=64)
        info = {"plugin": det.name, "version": det.version, "params": det.params.model_dump(mode="json"),
                "threshold": float(det.threshold), "fpr": det.fpr, "fitted": getattr(det, "fit_info", None)}
    ood, ood_info = _out_of_distribution(st, model, reference_data, clf, x)
    class_names = st.resources.class_names(model, clf.num_classes)
    results = []
    for i, filename in enumerate(names):
        label = int(np.argmax(probs[i]))
        row = {
            "file": filename,
            "label": label,
            "class_name": class_names[label],
            "confidences": {c: float(p) for c, p in zip(class_names, probs[i])},
            "logits": [float(v) for v in logits[i]],
            "resized_from": sizes[i],
            "resized": sizes[i] != list(shape[:-1]),
        }
        if guarded is not None:
            row["adversarial_score"] = float(guarded.scores[i])
            row["flagged"] = bool(guarded.flagged[i])
        if ood is not None:
            row["out_of_distribution"] = bool(ood[i] > ood_info["threshold"])
            row["ood_distance"] = float(ood[i])
        results.append(row)
    return {"model": model, "input_shape": list(shape), "class_names": class_names,
            "detector": info, "out_of_distribution": ood_info, "predictions": results}


def _out_of_distribution(st, model: str, reference: str | None, clf, x):
    """(distances, description) of the images from the model's reference data, or (None, why not)."""
    reference = reference or st.resources.training_data(model)
    if reference is None:
        return None, {"checked": False, "why": f"the data {model} was made for is unknown: name it in "
                      "reference_data to compare each image with it"}
    check = st.resources.ood_check(model, reference)
    return check.distances(clf, x), {"checked": True, **check.describe()}


def _decoded(files, clf, model: str, cfg) -> tuple[np.ndarray, list, list]:
    """The uploads as one batch for `clf`, each image fitted to its input as soon as it is
    decoded; the request's pixels together within EGIDE_MAX_PREDICT_PIXELS."""
    shape = clf.input_shape
    batch, sizes, names = [], [], []
    budget, used = int(cfg["EGIDE_MAX_PREDICT_PIXELS"]), 0
    per_image = int(cfg["EGIDE_MAX_PIXELS"])
    for i, f in enumerate(files):
        filename = f.filename or f"image {i}"
        data = f.read()
        if not data:
            raise pred._bad(i, filename, "an empty file", "empty")
        limit = min(per_image, budget - used)
        over_budget = pred._too_big(filename, f"with it the request's images hold more than the {budget} "
                                    "pixels allowed together (EGIDE_MAX_PREDICT_PIXELS); send fewer per request")
        if limit <= 0:
            raise over_budget
        volumes = len(shape) == 4  # a model of volumes: each upload is one whole volume
        try:
            if volumes:
                pixels, spacing = pred.decode_volume(data, filename, i, shape[-1], limit)
            else:
                pixels = pred.decode(data, filename, i, shape[-1], limit)
        except Problem as exc:
            if exc.status == 413 and limit < per_image:  # the request's budget bound, not the image's
                raise over_budget from None
            raise
        size = [int(d) for d in pixels.shape[:-1]]  # (H, W) or (D, H, W): pixels or voxels count alike
        used += int(np.prod(size))
        try:
            batch.append(pred.fit_volume(pixels, spacing, shape) if volumes else pred.fit(pixels, shape))
        except ValueError as exc:
            raise pred._bad(i, filename, f"{exc} for {model}", "invalid_channels") from None
        sizes.append(size)
        names.append(filename)
        del pixels  # only the fitted copy stays
    return np.stack(batch), sizes, names


def _detector_params(raw: str | None, errors: list) -> dict | None:
    """The multipart field `detector_params`: a JSON object (absent or empty: the defaults)."""
    if not raw or not raw.strip():
        return {}
    try:
        value = json_body.parse(raw, "detector_params")
    except Problem as exc:
        errors.append(field_error(["detector_params"], exc.detail, "json_invalid"))
        return None
    if not isinstance(value, dict):
        errors.append(field_error(["detector_params"], "must be a JSON object", "model_type"))
        return None
    return value


# ---- jobs ------------------------------------------------------------------------------------
RERUNNABLE = ("interrupted", "failed", "cancelled")


@api.post("/jobs")
def submit_job():
    kind, request_doc = validated_job(_json_body())
    return _submit(kind, request_doc)


@api.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str):
    """Submit an interrupted, failed or cancelled job again, as a new job with the same request
    (checked again: a model or plugin may have gone since)."""
    job = _job(job_id)
    if job["state"] not in RERUNNABLE:
        raise Problem(409, "Job cannot be re-run",
                      f"job {job_id} is {job['state']}; only {', '.join(RERUNNABLE)} jobs can be re-run"
                      + (" (submit a new job to run it again)" if job["state"] == "done" else ""),
                      type="job-not-rerunnable", state=job["state"])
    if job.get("rerun_by"):
        raise _already_rerun(job_id, job["rerun_by"])
    kind, request_doc = validated_job(job["request"])
    doc, status, headers = _submit(kind, request_doc, rerun_of=job_id)
    other = state().store.claim_rerun(job_id, doc["id"])
    if other is not None:  # a concurrent re-run won: this one never happened
        state().runner.cancel(doc["id"])
        raise _already_rerun(job_id, other)
    return doc, status, headers


def _already_rerun(job_id: str, new_id: str) -> Problem:
    url = url_for("api.get_job", job_id=new_id)
    return Problem(409, "Job already re-run", f"job {job_id} was re-run as job {new_id}; follow that one",
                   type="job-already-rerun", rerun_by=new_id, headers={"Location": url})


def _resume_from(old_id: str):
    """A re-run starts from the old job's checkpoint, when it left one (a trainer stopped
    mid-way resumes after its last finished epoch instead of starting over)."""
    from .work import CHECKPOINT

    def prepare(new_id: str) -> None:
        old = state().job_dir / old_id / CHECKPOINT
        if old.is_file():
            new = state().job_dir / new_id
            new.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(old, new / CHECKPOINT)

    return prepare


def _submit(kind: str, request_doc: dict, rerun_of: str | None = None):
    try:
        job_id = state().runner.submit(kind, request_doc, _resume_from(rerun_of) if rerun_of else None)
    except QueueFull as full:
        if full.job_id:  # what a re-run's preparation copied for it
            shutil.rmtree(state().job_dir / full.job_id, ignore_errors=True)
        raise Problem(429, "Too many jobs", "the job queue is full; wait for a job to finish, "
                      "or cancel one, and submit again", type="queue-full",
                      headers={"Retry-After": "10"}) from None
    url = url_for("api.get_job", job_id=job_id)
    doc = {"id": job_id, "url": url, "state": "queued"}
    if rerun_of:
        doc["rerun_of"] = rerun_of
    return doc, 202, {"Location": url}


def _json_body():
    """The request's JSON body: bounded before it is read, strict (no NaN), not too deep."""
    if request.mimetype != "application/json":  # a cross-site form or text/plain post, or a mistake
        raise Problem(415, "Unsupported media type",
                      f"send the body as JSON with 'Content-Type: application/json' (got {request.mimetype or 'none'!r})",
                      type="unsupported-media-type")
    if (request.content_length or 0) > json_body.MAX_BYTES:
        raise Problem(413, "Body too large", f"at most {json_body.MAX_BYTES} bytes of JSON are read",
                      type="body-too-large")
    return json_body.parse(request.stream.read(json_body.MAX_BYTES + 1))


@api.get("/jobs")
def list_jobs():
    limit = request.args.get("limit", "50")
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= 500:
        raise validation_problem([field_error(["query", "limit"], "an integer from 1 to 500", "int_parsing", limit)])
    return {"jobs": [_public(j) for j in state().store.list(int(limit))]}


@api.get("/jobs/<job_id>")
def get_job(job_id: str):
    return _public(_job(job_id))


@api.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    """A queued or running job is cancelled (its record stays, state `cancelled`); a finished one is
    deleted with its artifacts (204): its report URL then answers 404."""
    st = state()
    job = _job(job_id)
    if job["state"] in ("queued", "running"):
        st.runner.cancel(job_id)
        return _public(st.store.get(job_id)), 202 if job["state"] == "running" else 200
    if not st.store.delete(job_id):  # it was re-queued meanwhile: nothing is deleted
        return _public(st.store.get(job_id)), 409
    shutil.rmtree(st.job_dir / job_id, ignore_errors=True)
    return "", 204


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
        "rerun_by": job.get("rerun_by"),
        "request": job["request"],
        "created": job["created"],
        "started": job["started"],
        "finished": job["finished"],
        "progress": progress,
        "result": job["result"],
        "error": job["error"],
        "artifacts": {n: url_for("api.artifact", job_id=job["id"], name=n) for n in job["artifacts"]},
        # Where people open it: the lab page with this job's result shown, its full report and its card.
        "links": {"page": url_for("pages.index", job=job["id"]),
                  **{key: (url_for("api.artifact", job_id=job["id"], name=name) if name in job["artifacts"] else None)
                     for key, name in (("report", "report.html"), ("card", "card.html"), ("card_pdf", "card.pdf"))}},
    }
