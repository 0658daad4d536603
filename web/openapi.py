"""The OpenAPI 3.1 document of the JSON API, built from the same pydantic models that validate the
requests (web/schemas.py) and from each installed plugin's parameter model, so it cannot drift
from what the server accepts. Served at /api/v1/openapi.json, rendered at /api/v1/docs."""

from __future__ import annotations

import re
from typing import Any

from . import schemas as s

PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
MODELS = (s.AttackJob, s.EvaluateJob, s.DefendJob, s.ProblemDoc, s.PluginInfo, s.PluginList, s.ModelList,
          s.DatasetList, s.JobCreated, s.Job, s.JobList, s.PredictForm, s.PredictResult,
          s.NamedSource, s.ModelUploadForm, s.DatasetUploadForm)


def _ref(name: str) -> dict:
    return {"$ref": REF.format(model=name)}


def _json(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _problems(*codes: int) -> dict:
    why = {400: "Bad request", 401: "Missing or wrong token", 403: "Refused (no token set, not loopback)",
           404: "Not found", 405: "Method not allowed", 409: "Conflict with the current state",
           413: "Too large",
           422: "Invalid request: `errors` names each bad field", 429: "The job queue is full"}
    return {str(c): {"description": why.get(c, "Problem"),
                     "content": {"application/problem+json": {"schema": _ref("ProblemDoc")}}}
            for c in codes}


def _multipart(name: str) -> dict:
    return {"required": True, "content": {"multipart/form-data": {"schema": _ref(name)}}}


def _param(name: str, where: str = "path", description: str = "", schema: dict | None = None) -> dict:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema or {"type": "string"}}


def _op(summary: str, responses: dict, *, tag: str, params: list | None = None, body: dict | None = None,
        changes: bool = False, description: str = "", public: bool = False) -> dict:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    # Every operation but the API's own description wants the token when one is set (401);
    # state-changing ones are also refused from beyond loopback without one, or cross-site (403).
    if not public:
        op["responses"] = {**responses, **_problems(*((401, 403) if changes else (401,)))}
    return op


def _components(registry) -> tuple[dict, list[str]]:
    """Schemas of the request/response models and of every plugin's parameters (AttackParams_fgsm)."""
    schemas: dict[str, Any] = {}
    for model in MODELS:
        doc = model.model_json_schema(ref_template=REF, by_alias=True)
        schemas.update(doc.pop("$defs", {}))
        schemas[model.__name__] = doc
    failures = []
    for kind in ("attack", "defense", "detector", "dataset", "model"):
        for cls in registry.plugins(kind):
            params = getattr(cls, "Params", None)
            if params is None:
                continue
            name = f"{kind.capitalize()}Params_{re.sub(r'[^A-Za-z0-9._-]', '_', cls.name)}"
            try:
                doc = params.model_json_schema(ref_template=REF.format(model=f"{name}__{{model}}"))
            except Exception as exc:  # a plugin whose schema cannot be built: document the rest
                failures.append(f"{kind} {cls.name}: {type(exc).__name__}: {exc}")
                continue
            for sub, sub_doc in doc.pop("$defs", {}).items():
                schemas[f"{name}__{sub}"] = sub_doc
            doc["title"] = cls.title or cls.name
            doc["x-egide-plugin"] = {"kind": kind, "name": cls.name, "version": cls.version}
            schemas[name] = doc
    return schemas, failures


def _name_enums(schemas: dict, registry, names: dict) -> None:
    """The names a request may use, as enums: the installed plugins of the right sort, and the
    named models and data sets (uploads included) at the time the document is served. A client
    (or a fuzzer) then knows what is accepted, not only what is refused."""
    defenses = registry.plugins("defense")
    choices = {
        "attack": registry.names("attack"),
        "trainer": sorted(c.name for c in defenses if getattr(c, "needs_training_data", False)),
        "preprocessor": sorted(c.name for c in defenses if not getattr(c, "needs_training_data", False)),
        "detector": registry.names("detector"),
        "model": list(names.get("model", [])),
        "dataset": list(names.get("dataset", [])),
    }
    fields = {
        ("AttackJob", "plugin"): "attack", ("DefendJob", "plugin"): "trainer",
        ("JobDefense", "plugin"): "preprocessor", ("AttackSpec", "plugin"): "attack",
        ("DefenseSpec", "plugin"): "preprocessor", ("DetectorSpec", "plugin"): "detector",
        ("AttackJob", "model"): "model", ("DefendJob", "model"): "model", ("EvaluationConfig", "model"): "model",
        ("AttackJob", "data"): "dataset", ("DefendJob", "data"): "dataset", ("EvaluationConfig", "data"): "dataset",
    }
    for (model, field), sort in fields.items():
        prop = schemas.get(model, {}).get("properties", {}).get(field)
        if prop is None or not choices[sort]:
            continue
        branches = prop.get("anyOf", [prop])
        for branch in branches:
            if branch.get("type") == "string":
                branch["enum"] = choices[sort]


def document(registry, version: str = "0.1.0", extra_paths: dict | None = None,
             names: dict | None = None) -> dict:
    schemas, failures = _components(registry)
    _name_enums(schemas, registry, names or {})
    attack_params = sorted(n for n in schemas if n.startswith("AttackParams_") and "__" not in n)
    job_body = {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [_ref("AttackJob"), _ref("EvaluateJob"), _ref("DefendJob")],
        "discriminator": {"propertyName": "kind",
                          "mapping": {"attack": REF.format(model="AttackJob"),
                                      "evaluate": REF.format(model="EvaluateJob"),
                                      "defend": REF.format(model="DefendJob")}}}}}}
    paths: dict[str, dict] = {
        "/plugins": {"get": _op("Every installed plugin, by kind, with its parameter schema",
                                {"200": _json("PluginList", "The plugins")}, tag="plugins")},
        "/plugins/{kind}/{name}": {"get": _op(
            "One plugin", {"200": _json("PluginInfo", "The plugin"), **_problems(404, 409)}, tag="plugins",
            params=[_param("kind", description="attack, defense, detector, dataset or model (or plural)"),
                    _param("name")])},
        "/models": {
            "get": _op("Named models jobs and /predict accept (built-in and uploaded)",
                       {"200": _json("ModelList", "The models")}, tag="models"),
            "post": _op("Upload a Keras model (.keras or .h5, loaded in safe mode)",
                        {"201": _json("NamedSource", "Stored under a generated name (upload-...)"),
                         **_problems(413, 422)}, tag="models", changes=True,
                        body=_multipart("ModelUploadForm")),
        },
        "/datasets": {
            "get": _op("Named data sets jobs accept (built-in and uploaded)",
                       {"200": _json("DatasetList", "The data sets")}, tag="data"),
            "post": _op("Upload a data set (.npz, or a .zip of class folders)",
                        {"201": _json("NamedSource", "Stored under a generated name (upload-...)"),
                         **_problems(413, 422)}, tag="data", changes=True,
                        body=_multipart("DatasetUploadForm")),
        },
        "/predict": {"post": _op(
            "Classify uploaded images (synchronous)",
            {"200": _json("PredictResult", "One prediction per image, in upload order"),
             **_problems(413, 422)},
            tag="predict", changes=True,
            description="Images are converted like the data loaders convert files: grayscale/RGB to "
                        "the model's channels, resized to its input size (each prediction gives "
                        "`resized_from`), scaled to [0, 1]. A model of volumes reads each NIfTI "
                        "volume (or .npy array (D, H, W[, C])) whole onto its grid, proportions kept. "
                        "Bounded in bytes, pixels (voxels) and images. "
                        "With a `detector`, each prediction also has the detector's "
                        "`adversarial_score` and `flagged`; the detector is fitted to the model the "
                        "first time it is asked for (that request waits), then kept.",
            body={"required": True, "content": {"multipart/form-data": {
                "schema": _ref("PredictForm"),
                "encoding": {"image": {"contentType": "image/png, image/jpeg, application/octet-stream"}}}}})},
        "/jobs": {
            "post": _op("Submit an attack, evaluation or defend (training) job",
                        {"202": {**_json("JobCreated", "Queued; poll its url"),
                                 "headers": {"Location": {"schema": {"type": "string"}}}},
                         **_problems(422, 429)},
                        tag="jobs", body=job_body, changes=True,
                        description="An attack's `params` follow its parameter schema: "
                                    + ", ".join(f"`{n}`" for n in attack_params) + "."),
            "get": _op("Recent jobs, newest first", {"200": _json("JobList", "The jobs"), **_problems(422)},
                       tag="jobs", params=[_param("limit", "query", "1 to 500 (default 50)",
                                                  {"type": "integer", "minimum": 1, "maximum": 500})]),
        },
        "/jobs/{job_id}": {
            "get": _op("One job: state, progress, result, artifacts",
                       {"200": _json("Job", "The job"), **_problems(404)}, tag="jobs", params=[_param("job_id")]),
            "delete": _op("Cancel a queued or running job (202 while a running job stops); delete a "
                          "finished one with its artifacts (204)",
                          {"200": _json("Job", "Cancelled before it ran"),
                           "202": _json("Job", "Stopping"), "204": {"description": "Deleted"},
                           **_problems(404, 409)},
                          tag="jobs", params=[_param("job_id")], changes=True),
        },
        "/jobs/{job_id}/rerun": {"post": _op(
            "Re-run an interrupted, failed or cancelled job as a new job",
            {"202": {**_json("JobCreated", "Queued again (its request checked again); poll its url"),
                     "headers": {"Location": {"schema": {"type": "string"}}}},
             **_problems(404, 409, 422, 429)},
            tag="jobs", params=[_param("job_id")], changes=True,
            description="Jobs a stopped server left running are marked `interrupted`; this submits the "
                        "same request again. A queued, running or done job is a 409.")},
        "/jobs/{job_id}/artifacts/{name}": {"get": _op(
            "Download one artifact a job listed",
            {"200": {"description": "The file (PNG, .npz, HTML or JSON)",
                     "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                         "contentMediaType": "application/octet-stream"}}}},
             **_problems(404)},
            tag="jobs", params=[_param("job_id"), _param("name")])},
        "/openapi.json": {"get": _op("This document", {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
            tag="meta", public=True)},
        "/docs": {"get": _op("This document as a page", {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}, tag="meta",
            public=True)},
    }
    for path, ops in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(ops)
    doc = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {"title": "Égide lab API", "version": version,
                 "description": "Attack, defend and guard image classifiers. Every error is an RFC 9457 "
                                "problem document. When the server has a token, send "
                                "`Authorization: Bearer <token>`."},
        "servers": [{"url": PREFIX}],
        "security": [{}, {"bearerAuth": []}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }
    if failures:
        doc["x-egide-schema-failures"] = failures
    return doc


def refs(node, found: list | None = None) -> list[str]:
    """Every $ref string in a document."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)
    return found


def resolve(doc: dict, ref: str):
    """The node a local $ref points at (KeyError if it does not)."""
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(doc: dict):
    """(method, path, operation) for each operation, in document order: what the docs page lists."""
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method.upper(), PREFIX + path, op
