"""One config, one result: `egide attack`, the API's attack job and `run_attack` from Python run
the same function (egide.lab.jobs), so one config gives the same per-image result through each
face, whatever batch size each picks. The config leaves split and the defense's adaptive flag to
their defaults: the faces agree on those too."""

from __future__ import annotations

import io

import numpy as np
import pytest

from egide.lab.cli import main
from egide.web import create_app

from web_jobs import wait

CONFIG = {"plugin": "pgd", "params": {"eps": 4 / 255, "steps": 3}, "model": "brain-tumor-cnn",
          "data": "brain-tumor-phantom", "limit": 12, "seed": 3,
          "defense": {"plugin": "gaussian-noise", "params": {"sigma": 0.03}}}


@pytest.fixture(scope="module")
def by_python(registry):
    from egide.core import Classifier
    from egide.lab.evaluation.images import local_source
    from egide.lab.jobs import run_attack

    clf = Classifier.load(CONFIG["model"])
    outcome = run_attack({**CONFIG, "batch_size": 16}, classifier=clf, registry=registry,
                         source=local_source(CONFIG["data"], clf, registry))
    return outcome.result, outcome.summary


def test_the_command_line_gives_the_python_result(by_python, tmp_path):
    out = tmp_path / "adv.npz"
    code = main(["attack", "--model", CONFIG["model"], "--data", CONFIG["data"], "--limit", "12", "--seed", "3",
                 "--attack", "pgd", "--param", "eps=4/255", "--param", "steps=3", "--defense", "gaussian-noise",
                 "--defense-param", "sigma=0.03", "--batch-size", "7", "--out", str(out), "--no-progress"])
    assert code == 0
    _same(by_python, np.load(out), out.with_suffix(".json"))


def test_the_api_job_gives_the_python_result(by_python, registry, tmp_path):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry})
    try:
        client = app.test_client()
        resp = client.post("/api/v1/jobs", json={"kind": "attack", **CONFIG})
        assert resp.status_code == 202, resp.get_json()
        job = wait(client, resp.get_json()["url"], timeout=300)
        assert job["state"] == "done", job["error"]
        npz = np.load(io.BytesIO(client.get(job["artifacts"]["adversarial.npz"]).data))
        _same(by_python, npz, None, job["result"])
    finally:
        app.extensions["egide"].runner.shutdown()


def _same(by_python, npz, summary_path, summary=None):
    import json

    result, expected = by_python
    summary = summary or json.loads(summary_path.read_text())
    assert summary["batch_size"] != expected["batch_size"]  # each face batched its own way
    assert np.array_equal(npz["y_pred"], result.y_pred)
    assert np.array_equal(npz["y_pred_adv"], result.y_pred_adv)
    np.testing.assert_allclose(npz["x_adv"], result.x_adv, atol=1e-5)
    assert summary["robust_accuracy"] == expected["robust_accuracy"]
    assert summary["defense"] == expected["defense"] and summary["defense"]["adaptive"] is True
    assert summary["data"] == expected["data"] == {"source": CONFIG["data"], "split": "test"}
    assert summary["subset"]["indices"] == expected["subset"]["indices"]
    replay = {k: v for k, v in summary["config"].items() if k != "batch_size"}
    assert replay == {k: v for k, v in expected["config"].items() if k != "batch_size"}
