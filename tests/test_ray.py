"""Evaluations on a real Ray cluster: a head and a second worker node started with `ray start` on
loopback, as a user would on two machines. A sharded evaluation gives the same per-image results
as a local run with the same batch size; a worker process killed mid-run is replaced and the
result is unchanged; an error in a task (a model the workers cannot load) fails the run once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import egide
from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, evaluate

ray = pytest.importorskip("ray")

CLASSES = ("horizontal", "vertical", "diagonal")
ATTACKS = [AttackSpec(plugin="fgsm"), AttackSpec(plugin="pgd", params={"steps": 10})]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_named(title: str) -> list[int]:
    """Pids whose command line starts with `title` (Ray renames a worker after its task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(title.encode()):
                    pids.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return pids


def _ray(*args, env):
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=180)


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second worker node, one CPU each, on 127.0.0.1; stopped at the end."""
    temp = tempfile.mkdtemp(prefix="egide-ray-", dir="/tmp")  # short: Ray's socket paths
    # A loopback-only cluster of this test: no token to share between its processes.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _ray("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", env=env)
        _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
             "--disable-usage-stats", env=env)
        yield address
    finally:
        ray.shutdown()
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


@pytest.fixture(scope="module")
def data(bars):
    _, _, x_test, y_test = bars
    return egide.Dataset(x_test[:64], y_test[:64], CLASSES)


def _config(**extra) -> EvaluationConfig:
    return EvaluationConfig(model="bars", data="bars", attacks=ATTACKS, eps=[0.05, 0.1], gallery=0,
                            sanity_checks=False, batch_size=16, **extra)


def _per_image(report) -> list:
    return [(r.attack, r.eps, r.robust.tolist(), np.round(r.l2, 5).tolist()) for r in report.runs]


def test_without_an_executor_ray_is_never_imported():
    # Ray is imported in one place, lab/evaluation/ray_executor.py, which only an executor loads.
    code = ("import sys\nimport egide\nimport egide.lab.cli\nimport egide.web\nimport egide.web.work\n"
            "import egide.lab.evaluation.pipeline\nprint('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_sharded_run_gives_the_local_run_s_per_image_results(cluster, clf, data):
    local = evaluate(_config(), classifier=clf, dataset=data)
    sharded = evaluate(_config(executor={"ray": cluster}), classifier=clf, dataset=data)
    assert ray.cluster_resources().get("CPU") == 2  # both nodes took part
    assert _per_image(sharded) == _per_image(local)
    assert sharded.config["executor"] == {"ray": cluster}


def test_a_worker_killed_mid_run_is_replaced_and_the_result_unchanged(cluster, clf, data):
    slow = [AttackSpec(plugin="pgd", params={"steps": 1500})]
    config = _config(executor={"ray": cluster}).model_copy(update={"attacks": slow, "eps": [0.1]})
    killed: list[int] = []

    def kill_one_busy_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _processes_named("ray::_attack_batch")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker)
    killer.start()
    sharded = evaluate(config, classifier=clf, dataset=data)
    killer.join()
    assert killed, "no worker was seen running a task"
    local = evaluate(config.model_copy(update={"executor": None}), classifier=clf, dataset=data)
    assert _per_image(sharded) == _per_image(local)


def test_an_error_in_a_task_fails_the_run_once_with_its_message(cluster, data):
    # A model the driver can wrap but the workers refuse to load (Keras safe mode: Lambda code).
    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 1.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(flat))
    clf = egide.Classifier.from_keras(model)
    started = time.monotonic()
    with pytest.raises(egide.EgideError, match="Lambda"):
        evaluate(_config(executor={"ray": cluster}, stop_on_broken_setup=False), classifier=clf, dataset=data)
    assert time.monotonic() - started < 120


def test_the_server_runs_its_jobs_attacks_on_the_cluster(cluster, tmp_path, registry):
    from egide.web import create_app

    from web_jobs import wait

    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry,
                      "EGIDE_RAY_ADDRESS": cluster})
    try:
        client = app.test_client()
        config = {"attacks": [{"plugin": "fgsm"}], "eps": [4 / 255], "limit": 16, "batch_size": 8,
                  "gallery": 0, "sanity_checks": False}
        resp = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": config})
        job = wait(client, resp.get_json()["url"], timeout=300)
        assert job["state"] == "done", job["error"]
        local = evaluate({**config, "model": "brain-tumor-cnn", "data": "brain-tumor-phantom"})
        assert job["result"]["runs"][0]["robust_accuracy"] == local.runs[0].robust_accuracy
        resp = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "limit": 8,
                                                "batch_size": 4, "params": {"eps": 4 / 255}})
        job = wait(client, resp.get_json()["url"], timeout=300)
        assert job["state"] == "done" and job["result"]["images"] == 8
    finally:
        app.extensions["egide"].runner.shutdown()
