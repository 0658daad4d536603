"""Jobs: attack and evaluation jobs run to done in a worker thread and their artifacts download;
cancelling (queued and running), the bounded queue (429), and restarts (nothing is lost)."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest

from egide.web import create_app
from egide.web.jobs import JobRunner, JobStore

from web_jobs import until, wait

EPS = 0.0157


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="module")
def app(instance, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(instance), "EGIDE_REGISTRY": registry})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture(scope="module")
def attack_job(app):
    client = app.test_client()
    resp = client.post("/api/v1/jobs", json={
        "kind": "attack", "plugin": "fgsm", "params": {"eps": EPS},
        "model": "brain-tumor-cnn", "data": "brain-tumor-phantom", "split": "test", "limit": 8,
    })
    assert resp.status_code == 202, resp.get_json()
    assert resp.headers["Location"] == resp.get_json()["url"]
    return wait(client, resp.get_json()["url"])


def test_attack_job_runs_to_done(attack_job):
    job = attack_job
    assert job["state"] == "done", job["error"]
    assert job["progress"]["done"] == job["progress"]["total"] == 8
    s = job["result"]
    assert s["attack"] == "fgsm" and s["images"] == 8 and s["params"]["eps"] == EPS
    assert 0 <= s["robust_accuracy"] <= 1 and 0 <= s["success_rate"] <= 1
    assert s["linf_max"] <= EPS + 1e-6
    assert len(s["examples"]) == 6 and s["class_names"][0] == "glioma"
    for ex in s["examples"]:  # what the gallery shows: labels and confidences of both images
        assert set(ex["confidences"]["clean"]) == set(s["class_names"])
        assert sum(ex["confidences"]["adversarial"].values()) == pytest.approx(1, abs=1e-4)
        assert ex["clean_confidence"] == pytest.approx(ex["confidences"]["clean"][ex["clean_pred"]])
        assert ex["adv_confidence"] == max(ex["confidences"]["adversarial"].values())
        # Success only on an image the model classified right before the attack.
        assert ex["success"] == (ex["clean_pred"] == ex["label"] and ex["adv_pred"] != ex["label"])


def test_attack_artifacts_download_and_are_valid(app, attack_job):
    from PIL import Image

    client = app.test_client()
    links = attack_job["artifacts"]
    assert "adversarial.npz" in links and "clean-0.png" in links and "adversarial-0.png" in links
    resp = client.get(links["adversarial.npz"])
    assert resp.status_code == 200
    with np.load(io.BytesIO(resp.data)) as npz:
        x_adv, y = npz["x_adv"], npz["y"]
        assert x_adv.shape == (8, 64, 64, 1) and x_adv.dtype == np.float32 and y.shape == (8,)
        assert json.loads(str(npz["summary"]))["attack"] == "fgsm"
    ds = app.extensions["egide"].resources.dataset("brain-tumor-phantom", "test")
    drawn = attack_job["result"]["subset"]["indices"]  # the 8 images `limit` drew, stratified by class
    assert len(drawn) == 8 and len(set(ds.y[drawn].tolist())) == 4
    assert np.array_equal(y, ds.y[drawn])
    assert np.abs(x_adv - ds.x[drawn]).max() <= EPS + 1e-6  # the budget holds
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    png = client.get(links["adversarial-0.png"])
    assert png.mimetype == "image/png" and Image.open(io.BytesIO(png.data)).size == (64, 64)
    # The perturbation, amplified to the full range: mid-grey is no change, and the largest
    # change of the image reaches black or white.
    pert = np.asarray(Image.open(io.BytesIO(client.get(links["perturbation-0.png"]).data)), np.float32) / 255
    delta = x_adv[0, ..., 0] - ds.x[drawn[0], ..., 0]
    assert pert.shape == (64, 64) and (pert.min() <= 0.01 or pert.max() >= 0.99)
    assert np.abs((pert - 0.5) * 2 * np.abs(delta).max() - delta).max() < 2 / 255 * np.abs(delta).max() + 1e-6
    assert client.get(attack_job["url"] + "/artifacts/..%2Fjobs.sqlite3").status_code == 404


def test_jobs_are_listed(app, attack_job):
    jobs = app.test_client().get("/api/v1/jobs").get_json()["jobs"]
    assert attack_job["id"] in [j["id"] for j in jobs]


def test_evaluation_job_writes_its_report(app):
    client = app.test_client()
    resp = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {
        "attacks": [{"plugin": "fgsm"}], "eps": [0.03], "limit": 8, "sanity_checks": False, "gallery": 2,
    }})
    assert resp.status_code == 202, resp.get_json()
    job = wait(client, resp.get_json()["url"])
    assert job["state"] == "done", job["error"]
    assert set(job["result"]["worst_case_robust_accuracy"]) == {"0.03"}
    html = client.get(job["artifacts"]["report.html"])
    assert html.status_code == 200 and b"<html" in html.data.lower()
    report = client.get(job["artifacts"]["report.json"]).get_json()
    assert report["data"]["images"] == 8
    plot = client.get(job["artifacts"]["robustness.png"])  # accuracy versus epsilon, for the page
    assert plot.mimetype == "image/png" and plot.data.startswith(b"\x89PNG")


def test_an_evaluation_job_runs_a_reference_suite(app):
    client = app.test_client()
    resp = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {
        "attacks": [{"plugin": "fgsm"}], "eps": [4 / 255], "limit": 6, "sanity_checks": False,
        "gallery": 0, "suite": "quick",
    }})
    assert resp.status_code == 202, resp.get_json()
    job = wait(client, resp.get_json()["url"])
    assert job["state"] == "done", job["error"]
    suite = job["result"]["suite"]
    assert suite["ran"] == "quick" and suite["runs"][0]["eps_text"] == "4/255"
    assert job["result"]["worst_case_robust_accuracy"]["4/255"] <= suite["runs"][0]["robust_accuracy"]
    bad = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {"suite": "strongest"}})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["loc"] == ["config", "suite"]


def test_cancel_a_running_attack_job(app, attack_job):
    client = app.test_client()
    resp = client.post("/api/v1/jobs", json={
        "kind": "attack", "plugin": "pgd", "params": {"eps": EPS, "steps": 200},
        "limit": 16, "batch_size": 1,
    })
    url = resp.get_json()["url"]
    until(lambda: client.get(url).get_json()["state"] != "queued", what="the job leaving the queue")
    resp = client.delete(url)
    assert resp.status_code == 202 and resp.get_json()["state"] == "running"
    job = wait(client, url)
    assert job["state"] == "cancelled" and job["progress"]["done"] < 16 and job["artifacts"] == {}


def test_restart_keeps_finished_jobs_and_marks_running_ones_interrupted(app, instance, registry, attack_job):
    store = app.extensions["egide"].store
    running = store.create("attack", {"plugin": "fgsm"})
    assert store.start(running)
    queued = store.create("attack", {"plugin": "fgsm"})
    again = create_app({"EGIDE_INSTANCE_PATH": str(instance), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    client = again.test_client()
    done = client.get(attack_job["url"]).get_json()
    assert done["state"] == "done" and done["result"] == attack_job["result"]
    assert client.get(done["artifacts"]["adversarial.npz"]).status_code == 200
    for job_id in (running, queued):
        job = client.get(f"/api/v1/jobs/{job_id}").get_json()
        assert job["state"] == "interrupted" and "stopped" in job["error"]
    again.extensions["egide"].runner.shutdown()


def test_an_interrupted_job_can_be_rerun_after_a_restart(tmp_path, registry):
    """Two app instances over one SQLite file: the first stops with a job running, the second
    marks it interrupted and re-runs it on request."""
    first = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    body = {"kind": "attack", "plugin": "fgsm", "params": {"eps": EPS}, "limit": 4}
    created = first.test_client().post("/api/v1/jobs", json=body).get_json()
    first.extensions["egide"].store.start(created["id"])  # it was running when the server stopped
    first.extensions["egide"].runner.shutdown()

    second = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 1})
    try:
        client = second.test_client()
        old = client.get(created["url"]).get_json()
        assert old["state"] == "interrupted"
        resp = client.post(created["url"] + "/rerun")
        assert resp.status_code == 202, resp.get_json()
        new = resp.get_json()
        assert new["rerun_of"] == created["id"] and new["id"] != created["id"]
        assert resp.headers["Location"] == new["url"]
        job = wait(client, new["url"])
        assert job["state"] == "done" and job["result"]["images"] == 4
        assert job["request"] == old["request"]
        assert client.get(created["url"]).get_json()["state"] == "interrupted"  # history is kept
        # Re-run once: the second time points to the job that re-runs it.
        again = client.post(created["url"] + "/rerun")
        assert again.status_code == 409 and again.get_json()["rerun_by"] == new["id"]
        assert again.headers["Location"] == new["url"]
        assert client.get(created["url"]).get_json()["rerun_by"] == new["id"]

        # A done job is not re-run (submit it again instead): 409, as a problem document.
        done = client.post(new["url"] + "/rerun")
        assert done.status_code == 409 and done.mimetype == "application/problem+json"
        assert done.get_json()["state"] == "done" and "interrupted" in done.get_json()["detail"]
        assert client.post("/api/v1/jobs/nope/rerun").status_code == 404
    finally:
        second.extensions["egide"].runner.shutdown()


def test_a_rerun_checks_the_request_again(tmp_path, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    try:
        store = app.extensions["egide"].store
        gone = store.create("attack", {"kind": "attack", "plugin": "no-longer-installed", "params": {}})
        store.finish(gone, "failed", error="boom")
        resp = app.test_client().post(f"/api/v1/jobs/{gone}/rerun")
        assert resp.status_code == 422 and resp.get_json()["errors"][0]["loc"] == ["plugin"]
        cancelled = app.test_client().post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "limit": 2})
        url = cancelled.get_json()["url"]
        app.test_client().delete(url)
        assert app.test_client().post(url + "/rerun").status_code == 202
    finally:
        app.extensions["egide"].runner.shutdown()


def test_cancel_a_queued_job_and_queue_full(tmp_path, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry,
                      "EGIDE_WORKERS": 0, "EGIDE_QUEUE_SIZE": 2})
    client = app.test_client()
    body = {"kind": "attack", "plugin": "fgsm", "limit": 4}
    first = client.post("/api/v1/jobs", json=body).get_json()
    client.post("/api/v1/jobs", json=body)
    full = client.post("/api/v1/jobs", json=body)
    assert full.status_code == 429 and full.mimetype == "application/problem+json"
    assert full.headers["Retry-After"]
    assert len(client.get("/api/v1/jobs").get_json()["jobs"]) == 2  # the refused one left no ghost
    resp = client.delete(first["url"])
    assert resp.status_code == 200 and resp.get_json()["state"] == "cancelled"
    assert client.get(first["url"]).get_json()["state"] == "cancelled"
    app.extensions["egide"].runner.shutdown()


def test_runner_never_runs_a_cancelled_job_and_stops_a_running_one(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    release, started, ran = threading.Event(), threading.Event(), []

    def work(job, progress):
        ran.append(job["id"])
        if job["request"]["mode"] == "block":
            started.set()
            release.wait(10)
            return {"ok": True}, []
        for i in range(1000):  # "loop": runs until the cancellation surfaces in progress()
            progress(i, 1000)
            time.sleep(0.01)
        return {"ok": True}, []

    runner = JobRunner(store, work, workers=1, queue_size=4)
    try:
        blocker = runner.submit("attack", {"mode": "block"})
        assert started.wait(10)
        waiting = runner.submit("attack", {"mode": "loop"})
        runner.cancel(waiting)
        looping = runner.submit("attack", {"mode": "loop"})
        release.set()
        # Cancel once the job has made progress (a running job, part-way through).
        until(lambda: store.get(looping)["done"] > 0, what="the looping job making progress")
        runner.cancel(looping)
        until(lambda: store.get(looping)["state"] != "running", what="the cancellation taking effect")
        assert store.get(blocker)["state"] == "done"
        assert store.get(waiting)["state"] == "cancelled" and waiting not in ran
        job = store.get(looping)
        assert job["state"] == "cancelled" and 0 < job["done"] < 1000
    finally:
        release.set()
        runner.shutdown()


def test_a_failing_job_is_failed_not_lost(tmp_path):
    from egide.core.errors import DataError

    store = JobStore(tmp_path / "jobs.sqlite3")

    def work(job, progress):
        raise DataError("the data set is empty")

    runner = JobRunner(store, work, workers=1)
    job_id = runner.submit("attack", {})
    until(lambda: store.get(job_id)["state"] not in ("queued", "running"), what="the job ending")
    runner.shutdown()
    assert store.get(job_id)["state"] == "failed" and store.get(job_id)["error"] == "the data set is empty"


def test_cancel_stops_a_running_job_inside_its_one_batch(app):
    """All 16 images in one batch of 100,000 PGD steps: a cancel that waited for the batch to end
    would take many minutes; the job stops at the model's next pass and has done no batch."""
    client = app.test_client()
    resp = client.post("/api/v1/jobs", json={
        "kind": "attack", "plugin": "pgd", "params": {"eps": EPS, "steps": 100_000, "early_stop": False},
        "limit": 16, "batch_size": 16,
    })
    url = resp.get_json()["url"]
    until(lambda: client.get(url).get_json()["state"] == "running", what="the job starting")
    assert client.delete(url).status_code == 202
    job = wait(client, url, timeout=60.0)
    assert job["state"] == "cancelled" and job["error"] == "cancelled while running"
    assert job["progress"]["done"] == 0 and job["artifacts"] == {}
