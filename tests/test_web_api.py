"""The JSON API through Flask's test client: plugins, models, data sets, and every kind of bad
input answered by an RFC 9457 problem document (never a 500). No job runs here (0 workers)."""

from __future__ import annotations

from typing import Literal

import pytest

from egide.web import create_app, settings

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")),
                      "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


def problem(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    doc = resp.get_json()
    assert doc["status"] == status and doc["title"] and doc["type"]
    return doc


def test_state_lives_in_app_extensions(app, registry):
    state = app.extensions["egide"]
    assert state.registry is registry
    assert (state.job_dir.parent / "jobs.sqlite3").is_file()


def test_settings_read_egide_environment():
    env = {"EGIDE_TOKEN": "s3cret", "EGIDE_WORKERS": "2", "EGIDE_INSTANCE_PATH": "/tmp/x"}
    cfg = settings({"EGIDE_WORKERS": 3}, environ=env)
    assert cfg["EGIDE_TOKEN"] == "s3cret" and cfg["EGIDE_WORKERS"] == 3
    assert cfg["EGIDE_INSTANCE_PATH"] == "/tmp/x" and cfg["EGIDE_QUEUE_SIZE"] == 16
    with pytest.raises(ValueError, match="EGIDE_WORKERS"):
        settings(environ={"EGIDE_WORKERS": "many"})


def test_plugins_lists_every_kind_with_schemas(client):
    doc = client.get("/api/v1/plugins").get_json()
    assert set(doc["plugins"]) == {"attacks", "defenses", "detectors", "datasets", "models", "model-formats"}
    assert isinstance(doc["failures"], list)
    attacks = {p["name"]: p for p in doc["plugins"]["attacks"]}
    assert {"fgsm", "pgd", "bim", "mim", "cw"} <= set(attacks)
    fgsm = attacks["fgsm"]
    assert fgsm["title"] == "Fast Gradient Sign Method" and fgsm["version"] and fgsm["description"]
    assert fgsm["schema"]["type"] == "object"
    assert {"eps", "norm", "targeted"} <= set(fgsm["schema"]["properties"])


def test_one_plugin(client):
    doc = client.get("/api/v1/plugins/attack/pgd").get_json()
    assert doc["name"] == "pgd" and "steps" in doc["schema"]["properties"]
    assert client.get("/api/v1/plugins/attacks/fgsm").status_code == 200  # plural kind too


def test_unknown_plugin_is_a_404_problem_with_a_suggestion(client):
    doc = problem(client.get("/api/v1/plugins/attack/pgdd"), 404)
    assert doc["suggestion"] == "pgd" and "Did you mean 'pgd'" in doc["detail"]
    doc = problem(client.get("/api/v1/plugins/atack/pgd"), 404)
    assert doc["suggestion"] == "attack"
    problem(client.get("/api/v1/nowhere"), 404)


def test_models_and_datasets(client):
    models = client.get("/api/v1/models").get_json()["models"]
    assert "brain-tumor-cnn" in [m["name"] for m in models]
    data = {d["name"]: d for d in client.get("/api/v1/datasets").get_json()["datasets"]}
    assert data["brain-tumor-phantom"]["splits"] == ["train", "val", "test"]


def test_page_renders_generated_forms(client):
    html = client.get("/").get_data(as_text=True)
    assert 'id="p-fgsm-eps"' in html and 'id="p-pgd-steps"' in html
    assert "egide.js" in html and client.get("/static/egide.css").status_code == 200


@pytest.mark.parametrize(
    "body, loc",
    [
        ("[1, 2]", []),
        ('{"kind": {}}', ["kind"]),
        ('{"kind": []}', ["kind"]),
        ('{"plugin": "fgsm"}', ["kind"]),
        ('{"kind": "attack", "plugin": "fgsm", "bogus": 1}', ["bogus"]),
        ('{"kind": "attack", "plugin": "fgsm", "limit": 0}', ["limit"]),
        ('{"kind": "attack", "plugin": "fgsm", "params": {"eps": -1}}', ["params", "eps"]),
        ('{"kind": "attack", "plugin": "fgsm", "params": {"eps": "big"}}', ["params", "eps"]),
        ('{"kind": "attack", "plugin": "fgsm", "params": {"nrm": "2"}}', ["params", "nrm"]),
        ('{"kind": "attack", "plugin": "pgd", "params": {"steps": 0}}', ["params", "steps"]),
        ('{"kind": "attack", "plugin": "fgsm", "params": {"eps": 8}}', ["params", "eps"]),  # > input range
        ('{"kind": "attack", "plugin": "fgsn"}', ["plugin"]),
        ('{"kind": "attack", "plugin": "fgsm", "target": "next"}', ["target"]),  # untargeted attack
        ('{"kind": "attack", "plugin": "fgsm", "model": "/etc/passwd"}', ["model"]),
        ('{"kind": "attack", "plugin": "fgsm", "split": "dev"}', ["split"]),
        ('{"kind": "attack", "plugin": "fgsm", "limit": 100000}', ["limit"]),
        ('{"kind": "evaluate", "config": {"eps": [2]}}', ["config", "eps"]),
        ('{"kind": "evaluate", "config": {"attacks": [{"plugin": "pgd", "params": {"steps": 0}}]}}',
         ["config", "attacks", 0, "params", "steps"]),
        ('{"kind": "evaluate", "config": {"attacks": [{"plugin": "fgsm"}], "extra": true}}', ["config", "extra"]),
    ],
)
def test_bad_job_requests_are_422_naming_the_field(client, body, loc):
    resp = client.post("/api/v1/jobs", data=body, content_type="application/json")
    doc = problem(resp, 422)
    assert loc in [e["loc"] for e in doc["errors"]], doc["errors"]
    err = next(e for e in doc["errors"] if e["loc"] == loc)
    assert err["msg"] and err["pointer"] == "".join(f"/{p}" for p in loc)


@pytest.mark.parametrize("body, words", [
    ("{not json", "not valid JSON"),
    ('{"kind": "evaluate", "config": {"clip": [NaN, Infinity]}}', "NaN is not a JSON number"),
    ('{"kind": "attack", "plugin": "fgsm", "seed": -Infinity}', "-Infinity is not a JSON number"),
    ("[" * 100_000, "nested 100000 levels deep"),
    ('{"kind": "attack", "plugin": "fgsm", "params": ' + "{\"a\": " * 50 + "1" + "}" * 51, "nested 51 levels"),
])
def test_a_body_that_is_not_strict_json_is_400_and_changes_nothing(client, body, words):
    before = client.get("/api/v1/jobs").get_json()["jobs"]
    doc = problem(client.post("/api/v1/jobs", data=body, content_type="application/json"), 400)
    assert words in doc["detail"]
    assert client.get("/api/v1/jobs").get_json()["jobs"] == before


def test_a_huge_body_is_refused_unread_and_odd_limits_are_422(client):
    doc = problem(client.post("/api/v1/jobs", data=b"{" + b" " * 2_000_000 + b"}", content_type="application/json"), 413)
    assert len(str(doc)) < 500  # nothing echoed back
    for limit in ("²", "-1", "1e3", "501"):
        problem(client.get(f"/api/v1/jobs?limit={limit}"), 422)


@pytest.mark.parametrize("body, loc", [
    ({"kind": "attack", "plugin": "fgsm", "seed": 2**70}, ["seed"]),
    ({"kind": "evaluate", "config": {"seed": 2**40}}, ["config", "seed"]),
    ({"kind": "evaluate", "config": {"eps": [0.01] * 40}}, ["config", "eps"]),
    ({"kind": "evaluate", "config": {"attacks": [{"plugin": "fgsm"}] * 20}}, ["config", "attacks"]),
    ({"kind": "attack", "plugin": "x" * 100_000}, ["plugin"]),
])
def test_the_request_models_bound_the_work_and_the_answer(client, body, loc):
    resp = client.post("/api/v1/jobs", json=body)
    doc = problem(resp, 422)
    assert loc in [e["loc"] for e in doc["errors"]]
    assert len(resp.get_data()) < 5_000  # a hostile body is not echoed back whole
    schema = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert "maximum" in str(schema) and "maxLength" in str(schema)  # the bounds are documented


def test_a_job_without_a_limit_gets_the_servers_limit(client, app):
    resp = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "limit": None})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = client.get(resp.headers["Location"]).get_json()
    assert job["request"]["limit"] == app.config["EGIDE_MAX_IMAGES"]
    client.delete(resp.headers["Location"])


def test_unknown_parameter_message_suggests_the_right_name(client):
    doc = problem(client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "params": {"nrm": "2"}}), 422)
    assert "Did you mean 'norm'" in doc["errors"][0]["msg"]


def test_unknown_job_and_artifact_are_404(client):
    problem(client.get("/api/v1/jobs/nope"), 404)
    problem(client.delete("/api/v1/jobs/nope"), 404)
    problem(client.get("/api/v1/jobs/nope/artifacts/adversarial.npz"), 404)
    problem(client.get("/api/v1/jobs?limit=zero"), 422)
    refused = client.put("/api/v1/jobs")
    problem(refused, 405)
    assert set(refused.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_token_required_when_set(tmp_path, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry,
                      "EGIDE_WORKERS": 0, "EGIDE_TOKEN": "s3cret"})
    client = app.test_client()
    resp = client.get("/api/v1/plugins")
    problem(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    problem(client.get("/api/v1/plugins", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/api/v1/plugins", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/").status_code == 200  # the page holds no data; its API calls send the token
    app.extensions["egide"].runner.shutdown()


def test_serve_refuses_a_public_address_without_a_token(capsys, monkeypatch):
    from egide.lab.cli import main

    monkeypatch.delenv("EGIDE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "without a token" in capsys.readouterr().err


def test_every_widget_is_generated_from_the_schema(tmp_path):
    """A third-party-style attack with a slider hint, an optional number, an enum, an integer,
    a checkbox and a text field: the page renders each from the schema alone."""
    import types

    from pydantic import BaseModel, Field

    from egide.core import Attack, Registry, hookimpl
    from egide.core.registry import PluginSource

    class Widgets(Attack):
        name = "widgets"
        title = "Widget gallery"

        class Params(BaseModel, extra="forbid"):
            eps: float = Field(0.03, gt=0, le=0.5, description="Budget",
                               json_schema_extra={"x-ui": {"widget": "slider", "step": 0.01}})
            step_size: float | None = Field(None, gt=0, description="Step; empty means automatic")
            mode: Literal["fast", "slow"] = Field("slow", description="Speed")
            steps: int = Field(10, ge=1, le=50, description="Steps")
            verbose: bool = Field(True, description="Talk")
            note: str = Field("hi", description="A note")

    module = types.ModuleType("widgets_plugin")
    module.egide_register_attacks = hookimpl(lambda register: register(Widgets))
    reg = Registry()
    assert reg.register_module(module, PluginSource("widgets")), reg.failures
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": reg, "EGIDE_WORKERS": 0})
    html = app.test_client().get("/").get_data(as_text=True)
    assert 'type="range" id="p-widgets-eps-range" min="0" max="0.5" step="0.01"' in html
    assert 'id="p-widgets-step_size"' in html and 'placeholder="automatic"' in html
    assert 'data-optional="true"' in html
    assert '<select id="p-widgets-mode"' in html and '<option value="slow" selected>' in html
    assert 'id="p-widgets-steps" name="steps" step="1"' in html and 'max="50"' in html
    assert 'type="checkbox" id="p-widgets-verbose" name="verbose" checked' in html
    assert 'type="text" id="p-widgets-note" name="note" value="hi"' in html
    assert "Budget" in html and "Step; empty means automatic" in html
    # No model or data set in this registry: submitting says so at the fields.
    doc = app.test_client().post("/api/v1/jobs", json={"kind": "attack", "plugin": "widgets"}).get_json()
    assert {"model", "data"} <= {e["field"] for e in doc["errors"]}
    app.extensions["egide"].runner.shutdown()
