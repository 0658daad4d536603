"""Evaluations on a real Ray cluster: a head (3 CPUs) and a second worker node (1 CPU) started
with `ray start` on loopback, as a user would on two machines. A sharded evaluation — attacks,
the suite's stages and a randomized defense both ways — gives the same per-image results on 4
workers, on 1 and locally with the same batch size; a worker process killed mid-run is replaced
and the result is unchanged; an error in a task (a model the workers cannot load) fails the run
once; a task no node can hold is refused at once."""

from __future__ import annotations

import functools
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
from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig, RayExecutorConfig, evaluate
from egide.lab.evaluation.ray_executor import RayExecutor

ray = pytest.importorskip("ray")

CLASSES = ("horizontal", "vertical", "diagonal")
ATTACKS = [AttackSpec(plugin="fgsm"), AttackSpec(plugin="pgd", params={"steps": 10})]

pytestmark = pytest.mark.slow  # a real two-node Ray cluster: the slow tier


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


def _until(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def _ray(*args, env):
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=180)


@pytest.fixture(scope="module")
def cluster():
    """A head node of 3 CPUs and a worker node of 1, on 127.0.0.1; stopped at the end. Four
    one-CPU tasks run at once; a three-CPU task fits the head only: one at a time."""
    temp = tempfile.mkdtemp(prefix="egide-ray-", dir="/tmp")  # short: Ray's socket paths
    # A loopback-only cluster of this test: no token to share between its processes.
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _ray("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=3",
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
    return EvaluationConfig(**{"model": "bars", "data": "bars", "attacks": ATTACKS, "eps": [0.05, 0.1],
                               "gallery": 0, "sanity_checks": False, "batch_size": 16, **extra})


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


def _suite_and_defense(report) -> list:
    suite = [(r.eps, r.robust.tolist(), r.broken_by.tolist()) for r in report.suite.runs] if report.suite else []
    defense = [(r.attack, r.eps, r.non_adaptive, r.adaptive) for d in report.defenses for r in d.runs]
    guard = [(r.eps, r.adaptive, r.guarded_robust_accuracy, r.detection_rate)
             for d in report.detectors for r in d.guard.runs]
    return [suite, defense, [d.worst_case for d in report.defenses], guard]


def test_4_workers_1_worker_and_a_local_run_give_the_same_per_image_results(cluster, clf, data):
    # Every kind of job: attacks, the suite's stages, a randomized defense (EOT) both ways, and
    # the detector-aware attack on a guard.
    # (The suite on a randomized defense would run the rand protocol: minutes, so apart.)
    # One budget: each worker process traces each attack at each budget once, and 4 of them
    # share this machine's 2 cores.
    # 24 images in batches of 16: every job splits into tasks, a part-batch among them.
    configs = [_config(suite="quick", limit=24, eps=[0.1]),
               _config(defenses=[{"plugin": "gaussian-noise", "params": {"sigma": 0.1}}], eot_samples=2,
                       detectors=[{"plugin": "mahalanobis"}], guard_attack_steps=10, eps=[0.1], limit=24)]
    four, one = RayExecutorConfig(ray=cluster), RayExecutorConfig(ray=cluster, cpus_per_task=3)
    run = functools.partial(evaluate, classifier=clf, dataset=data, detector_dataset=data)
    for config in configs:
        local = run(config)
        on_four = run(config.model_copy(update={"executor": four}))
        assert ray.cluster_resources().get("CPU") == 4  # 4 one-CPU tasks at a time, on both nodes
        assert _per_image(on_four) == _per_image(local)
        assert _suite_and_defense(on_four) == _suite_and_defense(local)
    # Only the head holds 3 CPUs: one task at a time (the randomized defense's seeds, once more).
    on_one = run(config.model_copy(update={"executor": one}))
    assert _per_image(on_one) == _per_image(local) and _suite_and_defense(on_one) == _suite_and_defense(local)
    assert on_four.config["executor"] == {"ray": cluster, "cpus_per_task": 1, "gpus_per_task": 0}


def test_a_task_no_node_can_hold_is_refused_at_once(cluster):
    with pytest.raises(egide.EgideError, match="--num-gpus"):
        RayExecutor(cluster, gpus_per_task=1)
    with pytest.raises(egide.EgideError, match="cpus_per_task=4"):
        RayExecutor(cluster, cpus_per_task=4)


def test_a_worker_killed_mid_run_is_replaced_and_the_result_unchanged(cluster, clf, data):
    slow = [AttackSpec(plugin="pgd", params={"steps": 1500})]
    config = _config(executor={"ray": cluster}, limit=32).model_copy(update={"attacks": slow, "eps": [0.1]})
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
                                                "batch_size": 4, "params": {"eps": 4 / 255},
                                                "defense": {"plugin": "median-filter"}})
        job = wait(client, resp.get_json()["url"], timeout=300)
        assert job["state"] == "done" and job["result"]["images"] == 8
        # Cancelled while its tasks run (compiled loops no interrupt reaches): they are stopped
        # with their worker processes, and the cluster is free again.
        slow = {"kind": "attack", "plugin": "pgd", "limit": 16, "batch_size": 4,
                "params": {"eps": 4 / 255, "steps": 100_000}}
        url = client.post("/api/v1/jobs", json=slow).get_json()["url"]
        # (Ray leaves a resource out of available_resources() when none of it is free.)
        assert _until(lambda: ray.available_resources().get("CPU", 0) < 4), "no task started"
        client.delete(url)
        assert wait(client, url, timeout=60)["state"] == "cancelled"
        assert _until(lambda: ray.available_resources().get("CPU", 0) == 4), "tasks still hold CPUs"
    finally:
        app.extensions["egide"].runner.shutdown()


def test_what_cannot_travel_as_a_saved_model_and_plugin_names_runs_on_the_driver(clf, registry):
    from egide.lab.evaluation.ray_executor import _views

    assert _views(clf, clf) == (clf, None)
    defended = registry.create("defense", "jpeg", quality=50).apply(clf)
    base, view = _views(defended, defended.adaptive(eot_samples=3))
    assert base is clf and view == {"defense": "jpeg", "params": {"quality": 50}, "adaptive": 3}
    assert _views(defended, defended)[1]["adaptive"] is None

    class OwnLogits(egide.Classifier):  # a subclass of the user's own: its code cannot travel
        pass

    own = OwnLogits.from_keras(clf.model)
    assert _views(own, own) is None
    assert _views(registry.create("defense", "jpeg").apply(own), None) is None
    assert _views(defended, registry.create("defense", "jpeg").apply(clf).adaptive()) is None


def test_an_onnx_model_travels_as_its_file_and_gives_the_local_result(cluster, tmp_path):
    pytest.importorskip("onnx2keras", reason="the onnx extra")
    from onnx_models import demo_as_onnx

    path = demo_as_onnx(egide.Classifier.load("brain-tumor-cnn").model, tmp_path / "demo.onnx")
    config = EvaluationConfig(model=str(path), data="brain-tumor-phantom", limit=16, eps=[4 / 255], gallery=0,
                              attacks=[{"plugin": "pgd", "params": {"steps": 5}}], sanity_checks=False, batch_size=8)
    local = evaluate(config)
    on_ray = evaluate(config.model_copy(update={"executor": RayExecutorConfig(ray=cluster)}))
    assert _per_image(on_ray) == _per_image(local)
    assert on_ray.model["conversion"]["from"] == "onnx"


def test_a_model_of_volumes_runs_on_the_cluster_with_the_local_result(cluster, rods_model):
    from examples.rods import CLASSES, make_rods

    x, y = make_rods(12, seed=51)
    clf = egide.Classifier.from_keras(rods_model, clip=(0.0, 1.0))
    data = egide.Dataset(x, y, CLASSES)
    config = EvaluationConfig(model="rods", data="rods", eps=[0.05], gallery=0, sanity_checks=False, batch_size=4,
                              attacks=[{"plugin": "pgd", "params": {"steps": 5}}])
    local = evaluate(config, classifier=clf, dataset=data)
    on_ray = evaluate(config.model_copy(update={"executor": RayExecutorConfig(ray=cluster)}), classifier=clf,
                      dataset=data)
    assert _per_image(on_ray) == _per_image(local)
