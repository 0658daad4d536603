"""The OpenAPI 3.1 document (/api/v1/openapi.json) and its page (/api/v1/docs): generated from the
request models and the plugins' parameter models, every route documented, every $ref resolving."""

from __future__ import annotations

import re

import pytest

from egide.web import create_app
from egide.web.openapi import refs, resolve


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")),
                      "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0, "EGIDE_TOKEN": "s3cret"})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture(scope="module")
def doc(app):
    resp = app.test_client().get("/api/v1/openapi.json")  # public even when a token is set
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def api_routes(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        out |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_document_is_openapi_31_with_every_route(app, doc):
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert api_routes(app) == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"] and op["summary"], (method, path)
            public = path in ("/openapi.json", "/docs")
            assert ("401" in op["responses"]) != public, (method, path)  # the token, when one is set
            for name in re.findall(r"{(\w+)}", path):
                assert name in {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}


def test_every_ref_resolves_within_the_document(doc):
    found = refs(doc)
    assert len(found) > 20
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert isinstance(resolve(doc, ref), dict), ref
    assert "$defs" not in str(found)


def test_schemas_come_from_the_request_models_and_the_plugins(doc, registry):
    from egide.web.schemas import AttackJob

    schemas = doc["components"]["schemas"]
    documented = schemas["AttackJob"]["properties"]
    # The names a request may use are enums of what is installed (and uploaded) now...
    assert documented["plugin"].pop("enum") == registry.names("attack")
    assert "brain-tumor-cnn" in documented["model"]["anyOf"][0].pop("enum")
    assert "brain-tumor-phantom" in documented["data"]["anyOf"][0].pop("enum")
    assert set(schemas["DefendJob"]["properties"]["plugin"]["enum"]) >= {"adversarial-training"}
    assert "jpeg" in schemas["JobDefense"]["properties"]["plugin"]["enum"]
    # ... and otherwise the schema is the request model's own.
    assert documented == AttackJob.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    assert "EvaluationConfig" in schemas and "AttackSpec" in schemas
    for name in registry.names("attack"):
        params = schemas[f"AttackParams_{name}"]
        assert params["properties"] == registry.get("attack", name).schema()["properties"]
    assert {"eps", "norm"} <= set(schemas["AttackParams_fgsm"]["properties"])
    body = doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["propertyName"] == "kind"
    assert set(body["discriminator"]["mapping"]) == {"attack", "evaluate", "defend"}
    assert "defense" in schemas["AttackJob"]["properties"] and "plugin" in schemas["DefendJob"]["properties"]
    for name in registry.names("defense"):  # preprocessors and trainers alike
        assert f"DefenseParams_{name}" in schemas
    rerun = doc["paths"]["/jobs/{job_id}/rerun"]["post"]
    assert {"202", "404", "409"} <= set(rerun["responses"])
    predict = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = resolve(doc, predict["schema"]["$ref"])
    assert form["properties"]["image"]["items"]["format"] == "binary"
    assert {"detector", "detector_params"} <= set(form["properties"])
    result = schemas["PredictResult"]["properties"]["detector"]
    assert "DetectorInfo" in str(result) and "flagged" in schemas["Prediction"]["properties"]


def test_document_is_valid_for_jsonschema_metaschema(doc):
    jsonschema = pytest.importorskip("jsonschema")
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_docs_page_lists_every_endpoint(app, doc):
    resp = app.test_client().get("/api/v1/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    for path, ops in doc["paths"].items():
        for method in ops:
            assert f'<span class="method {method.upper()}">{method.upper()}</span>/api/v1{path}' in html
    assert 'id="schema-AttackParams_pgd"' in html and 'href="#schema-PredictResult"' in html
    assert "<script" not in html  # server-rendered: no swagger-ui, no CDN
    assert all(href.startswith(("/", "#", "data:")) for href in re.findall(r'(?:href|src)="([^"]*)"', html))


def test_openapi_spec_validator_accepts_it(doc):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)  # raises on an invalid OpenAPI 3.1 document
