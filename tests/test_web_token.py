"""The API token: EGIDE_API_TOKEN (EGIDE_TOKEN is an alias), and POST/DELETE without a token
only from loopback."""

from __future__ import annotations

import pytest

from egide.web import create_app, settings


def test_api_token_env_name_and_alias():
    assert settings(environ={"EGIDE_API_TOKEN": "a"})["EGIDE_TOKEN"] == "a"
    assert settings(environ={"EGIDE_TOKEN": "b"})["EGIDE_API_TOKEN"] == "b"
    assert settings(environ={"EGIDE_TOKEN": "b", "EGIDE_API_TOKEN": "a"})["EGIDE_TOKEN"] == "a"
    assert settings({"EGIDE_API_TOKEN": "c"}, environ={})["EGIDE_TOKEN"] == "c"
    assert settings(environ={})["EGIDE_TOKEN"] is None


@pytest.fixture
def make_app(tmp_path, registry):
    apps = []

    def make(**config):
        app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry,
                          "EGIDE_WORKERS": 0, **config})
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.extensions["egide"].runner.shutdown()


def test_token_guards_state_changing_requests(make_app):
    client = make_app(EGIDE_API_TOKEN="s3cret").test_client()
    body = {"kind": "attack", "plugin": "fgsm"}
    for resp in (client.post("/api/v1/jobs", json=body), client.delete("/api/v1/jobs/x"),
                 client.post("/api/v1/jobs", json=body, headers={"Authorization": "Bearer nope"})):
        assert resp.status_code == 401 and resp.mimetype == "application/problem+json"
    ok = client.delete("/api/v1/jobs/x", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 404  # past the token check


def test_without_a_token_only_loopback_may_change_state(make_app):
    client = make_app().test_client()
    remote = {"REMOTE_ADDR": "203.0.113.7"}
    resp = client.delete("/api/v1/jobs/x", environ_base=remote)
    assert resp.status_code == 403 and "EGIDE_API_TOKEN" in resp.get_json()["detail"]
    assert client.get("/api/v1/plugins", environ_base=remote).status_code == 200
    assert client.delete("/api/v1/jobs/x").status_code == 404  # 127.0.0.1
    assert client.delete("/api/v1/jobs/x", environ_base={"REMOTE_ADDR": "::1"}).status_code == 404
