"""No cross-site use of a local server without a token: another site's page cannot submit jobs or
upload models through the user's browser, a rebound DNS name is not served, and JSON bodies must
say they are JSON. (The lab page itself, same-origin, is exercised in a real browser by
test_web_page.py.)"""

from __future__ import annotations

import io

import pytest

from egide.web import create_app

JOB = '{"kind": "attack", "plugin": "fgsm", "limit": 2}'


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")), "EGIDE_REGISTRY": registry,
                      "EGIDE_WORKERS": 0, "EGIDE_ALLOWED_HOSTS": "lab.hospital.example"})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


def status(resp, expected):
    assert resp.status_code == expected, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:9999"},  # another local port is another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_a_job_or_an_upload_from_another_site_is_refused(client, headers):
    doc = status(client.post("/api/v1/jobs", data=JOB, content_type="text/plain", headers=headers), 403)
    assert doc["type"].endswith("cross-site")
    status(client.post("/api/v1/jobs", data=JOB, content_type="application/json", headers=headers), 403)
    upload = {"file": (io.BytesIO(b"PK\x03\x04"), "m.keras")}
    status(client.post("/api/v1/models", data=upload, content_type="multipart/form-data", headers=headers), 403)
    status(client.delete("/api/v1/jobs/x", headers=headers), 403)
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200  # reading is not refused


def test_the_servers_own_page_and_scripts_are_served(client):
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    job = status(client.post("/api/v1/jobs", data=JOB, content_type="application/json", headers=own), 202)
    client.delete(f"/api/v1/jobs/{job['id']}")
    status(client.post("/api/v1/jobs", data=JOB, content_type="application/json"), 202)  # a script: no Origin


def test_a_json_body_must_say_it_is_json(client):
    doc = status(client.post("/api/v1/jobs", data=JOB, content_type="text/plain"), 415)
    assert "application/json" in doc["detail"]


@pytest.mark.parametrize("host, expected", [
    ("evil.example", 400), ("evil.example:8000", 400), ("127.0.0.1:8000", 200), ("[::1]:8000", 200),
    ("lab.hospital.example", 200),
])
def test_only_this_servers_names_are_served_against_dns_rebinding(client, host, expected):
    resp = client.get("/api/v1/jobs", headers={"Host": host})
    doc = status(resp, expected)
    if expected == 400:
        assert "EGIDE_ALLOWED_HOSTS" in doc["detail"]
    assert client.get("/", headers={"Host": host}).status_code == expected


def test_the_real_server_is_waitress_and_refuses_a_rebound_name(tmp_path):
    import http.client

    from egide.lab.server_process import running_server

    with running_server(tmp_path / "inst") as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/api/v1/models")
        ok = conn.getresponse()
        assert ok.status == 200 and ok.getheader("Server") == "egide"  # waitress, with our ident
        ok.read()
        conn.request("GET", "/api/v1/models", headers={"Host": "attacker.example"})
        assert conn.getresponse().status == 400
