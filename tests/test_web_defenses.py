"""Defenses and detectors through the web server, with no plugin named in its code: an attack job
behind a preprocessing defense (attacked through its adaptive view, measured on the real
defense), a `defend` job that trains a model with a trainer plugin and registers it as a model
that can be picked afterwards, and /predict guarded by a detector fitted on first use (kept in
memory and on disk), unsupervised and supervised.

The plugins are defined here, in a test plugin module registered into a Registry the way an
installed distribution's module is, so these tests do not depend on which defenses ship."""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
from pydantic import BaseModel, Field

from egide.core import Classifier, Defense, Detector, Preprocessor, PluginSource, Registry, hookimpl
from egide.web import create_app

from web_jobs import until, wait

EPS = 4 / 255
CALLS: dict[str, list] = {"trainer": [], "supervised": []}


class Quantise(Preprocessor):
    """Rounds pixels to a few levels: no gradient of its own, attacked through BPDA."""

    name = "web-test-quantise"
    title = "Quantise (web test)"

    class Params(BaseModel, extra="forbid"):
        levels: int = Field(8, ge=2, le=256, description="Grey levels kept")

    def transform(self, x, rng, clip):
        import tensorflow as tf

        k = float(self.params.levels - 1)
        return tf.round(x * k) / k


class TinyTrainer(Defense):
    """A few SGD steps of cross-entropy on the training images: a trainer in miniature."""

    name = "web-test-trainer"
    title = "Tiny trainer (web test)"
    needs_training_data = True

    class Params(BaseModel, extra="forbid"):
        learning_rate: float = Field(1e-3, gt=0, le=1, description="SGD step size")

    def apply(self, clf, train=None, val=None, *, progress=None, checkpoint=None, seed=0):
        import keras
        import tensorflow as tf

        CALLS["trainer"].append({"train": len(train), "val": None if val is None else len(val),
                                 "checkpoint": checkpoint, "seed": seed})
        model = keras.models.clone_model(clf.model)
        model.set_weights(clf.model.get_weights())
        trained = Classifier.from_keras(model, clip=clf.clip)
        opt = keras.optimizers.SGD(self.params.learning_rate)
        steps = list(train.batches(16))
        for i, (xb, yb) in enumerate(steps):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, trained.logits(xb)))
            opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            if progress:
                progress(i + 1, len(steps), "training")
        return trained


class Supervised(Detector):
    """Logit norm, thresholded; declares itself supervised so the server must make adversarial
    examples to fit it."""

    name = "web-test-supervised"
    title = "Supervised (web test)"
    supervised = True

    class Params(BaseModel, extra="forbid"):
        fpr: float = Field(0.1, gt=0, lt=1, description="False-positive rate on clean images")

    def _fit(self, clf, x_clean, x_adv):
        CALLS["supervised"].append({"clean": len(x_clean), "adv": None if x_adv is None else x_adv.shape})

    def _score(self, clf, x):
        return -np.abs(clf.predict_logits(x)).max(axis=1)

    def _state(self):
        return {}

    def _load_state(self, clf, state):
        pass


@hookimpl
def egide_register_defenses(register):
    register(Quantise)
    register(TinyTrainer)


@hookimpl
def egide_register_detectors(register):
    register(Supervised)


@pytest.fixture(scope="module")
def registry():
    reg = Registry.load()
    module = types.ModuleType("web_test_plugins")
    module.egide_register_defenses = egide_register_defenses
    module.egide_register_detectors = egide_register_detectors
    assert reg.register_module(module, PluginSource("web-test-plugins", "web-tests", "0.1")), reg.failures
    return reg


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="module")
def app(instance, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(instance), "EGIDE_REGISTRY": registry,
                      "EGIDE_DETECTOR_FIT_IMAGES": 32})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


def run(client, body) -> dict:
    resp = client.post("/api/v1/jobs", json=body)
    assert resp.status_code == 202, resp.get_json()
    job = wait(client, resp.get_json()["url"])
    assert job["state"] == "done", job["error"]
    return job


def problem(resp, status=422) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    return resp.get_json()


# ---- attack jobs behind a preprocessing defense ---------------------------------------------
def test_an_attack_job_behind_a_defense_is_measured_on_the_real_defense(client, app):
    plain = run(client, {"kind": "attack", "plugin": "fgsm", "params": {"eps": EPS}, "limit": 16})
    job = run(client, {"kind": "attack", "plugin": "fgsm", "params": {"eps": EPS}, "limit": 16,
                       "defense": {"plugin": "web-test-quantise", "params": {"levels": 4}}})
    s = job["result"]
    assert s["defense"]["plugin"] == "web-test-quantise" and s["defense"]["params"] == {"levels": 4}
    assert s["defense"]["adaptive"] is True
    assert job["request"]["defense"] == {"plugin": "web-test-quantise", "params": {"levels": 4}, "adaptive": True}
    # The predictions are those of the defended model: quantised inputs, not the bare model.
    res = app.extensions["egide"].resources
    data = res.dataset("brain-tumor-phantom", "test").subset(s["subset"]["indices"])  # what `limit` drew
    defended = res.registry.create("defense", "web-test-quantise", levels=4).apply(res.classifier("brain-tumor-cnn"))
    with np.load(io.BytesIO(client.get(job["artifacts"]["adversarial.npz"]).data)) as npz:
        assert np.array_equal(npz["y_pred"], defended.predict(data.x))
        assert np.array_equal(npz["y_pred_adv"], defended.predict(npz["x_adv"]))
    assert s["clean_accuracy"] == pytest.approx(float(np.mean(defended.predict(data.x) == data.y)))
    assert plain["result"]["defense"] is None


def test_defense_errors_are_422_at_the_field(client):
    body = {"kind": "attack", "plugin": "fgsm", "limit": 4}
    doc = problem(client.post("/api/v1/jobs", json={**body, "defense": {"plugin": "no-such-defense"}}))
    assert doc["errors"][0]["loc"] == ["defense", "plugin"]
    doc = problem(client.post("/api/v1/jobs", json={**body, "defense": {"plugin": "web-test-quantise",
                                                                          "params": {"levels": 1}}}))
    assert doc["errors"][0]["loc"] == ["defense", "params", "levels"]
    # A trainer is not a preprocessor: it makes a model, in a defend job.
    doc = problem(client.post("/api/v1/jobs", json={**body, "defense": {"plugin": "web-test-trainer"}}))
    assert doc["errors"][0]["loc"] == ["defense", "plugin"] and "'defend'" in doc["errors"][0]["msg"]
    doc = problem(client.post("/api/v1/jobs", json={"kind": "defend", "plugin": "web-test-quantise"}))
    assert doc["errors"][0]["loc"] == ["plugin"] and "'defense'" in doc["errors"][0]["msg"]
    doc = problem(client.post("/api/v1/jobs", json={"kind": "defend", "plugin": "web-test-trainer",
                                                     "params": {"learning_rate": 5}}))
    assert doc["errors"][0]["loc"] == ["params", "learning_rate"]


# ---- defend jobs: a trainer makes a model that can be picked afterwards ----------------------
def test_a_defend_job_trains_saves_and_registers_a_model(client):
    CALLS["trainer"].clear()
    job = run(client, {"kind": "defend", "plugin": "web-test-trainer", "params": {"learning_rate": 0.01},
                       "limit": 48, "seed": 3})
    [call] = CALLS["trainer"]
    assert call["train"] == 48 and call["val"] > 0 and call["seed"] == 3
    assert call["checkpoint"].parent.name == job["id"]
    assert job["progress"]["done"] == job["progress"]["total"] == 3 and job["progress"]["label"] == "training"
    s = job["result"]
    assert s["defense"]["plugin"] == "web-test-trainer" and s["base_model"] == "brain-tumor-cnn"
    assert s["train_images"] == 48 and 0 <= s["val_accuracy"] <= 1
    name = s["model"]
    # The artifact is a loadable Keras model ...
    resp = client.get(job["artifacts"]["model.keras"])
    assert resp.status_code == 200 and resp.data[:2] == b"PK"
    # ... and the trained model is listed, with the data set it was trained on and its classes.
    [listed] = [m for m in client.get("/api/v1/models").get_json()["models"] if m["name"] == name]
    assert listed["source"] == "upload" and listed["data"] == "brain-tumor-phantom"
    assert listed["made_by"]["job"] == job["id"] and listed["class_names"][0] == "glioma"
    # It can be picked: attacked in a job, and classified with in /predict.
    attacked = run(client, {"kind": "attack", "plugin": "fgsm", "params": {"eps": EPS}, "model": name, "limit": 8})
    assert attacked["result"]["model"] == name and attacked["result"]["class_names"][0] == "glioma"
    assert name in client.get("/").get_data(as_text=True)


def test_the_trained_model_survives_a_restart(client, instance, registry):
    made = [m for m in client.get("/api/v1/models").get_json()["models"] if m.get("made_by")]
    assert made
    again = create_app({"EGIDE_INSTANCE_PATH": str(instance), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 1})
    try:
        c = again.test_client()
        names = [m["name"] for m in c.get("/api/v1/models").get_json()["models"]]
        assert made[0]["name"] in names
        job = run(c, {"kind": "attack", "plugin": "fgsm", "model": made[0]["name"], "limit": 4})
        assert job["result"]["images"] == 4
    finally:
        again.extensions["egide"].runner.shutdown()


# ---- /predict guarded by a detector ------------------------------------------------------------
def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(pixels[..., 0], 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def predict(client, images, **form):
    data = {"model": "brain-tumor-cnn", **form,
            "image": [(io.BytesIO(png(x)), f"scan-{i}.png") for i, x in enumerate(images)]}
    return client.post("/api/v1/predict", data=data, content_type="multipart/form-data")


def predict_when_fitted(client, images, **form):
    """The first request with a new detector starts its fit and is answered at once (503, with
    Retry-After); the same request answers once the fit is done."""
    first = predict(client, images, **form)
    if first.status_code == 503:
        assert first.get_json()["type"].endswith("detector-fitting") and first.headers["Retry-After"]
        answers = []
        until(lambda: answers.append(predict(client, images, **form)) or answers[-1].status_code != 503,
              timeout=120, what="the detector's background fit")
        return answers[-1]
    return first


@pytest.fixture(scope="module")
def scans(app):
    return app.extensions["egide"].resources.dataset("brain-tumor-phantom", "test").x[:3]


def test_predict_with_an_unsupervised_detector_fits_it_once_and_keeps_it(client, scans):
    first = predict(client, scans, detector="example-max-softmax", detector_params='{"fpr": 0.1}')
    assert first.status_code == 503  # never fitted inside a request
    resp = predict_when_fitted(client, scans, detector="example-max-softmax", detector_params='{"fpr": 0.1}')
    assert resp.status_code == 200, resp.get_json()
    doc = resp.get_json()
    det = doc["detector"]
    assert det["plugin"] == "example-max-softmax" and det["params"] == {"fpr": 0.1} and det["fpr"] == 0.1
    assert det["fitted"]["images"] == 32 and det["fitted"]["split"] == "val" and det["fitted"]["adversarial"] is None
    for p in doc["predictions"]:
        assert 0 <= p["adversarial_score"] <= 1
        assert p["flagged"] == (p["adversarial_score"] > det["threshold"])
    # Max-softmax: the score is one minus the top confidence.
    p = doc["predictions"][0]
    assert p["adversarial_score"] == pytest.approx(1 - max(p["confidences"].values()), abs=1e-5)
    # Asked again: the same fitted detector (same threshold), no refit.
    again = predict(client, scans[:1], detector="example-max-softmax", detector_params='{"fpr": 0.1}').get_json()
    assert again["detector"]["threshold"] == det["threshold"]
    # Without a detector the answer has none.
    plain = predict(client, scans[:1]).get_json()
    assert plain["detector"] is None and "flagged" not in plain["predictions"][0]


def test_predict_with_a_supervised_detector_fits_it_on_pgd_examples(client, instance, registry, scans):
    CALLS["supervised"].clear()
    doc = predict_when_fitted(client, scans[:2], detector="web-test-supervised").get_json()
    [call] = CALLS["supervised"]
    assert call["clean"] == 32 and call["adv"] == (32, 64, 64, 1)
    assert doc["detector"]["fitted"]["adversarial"] == "pgd eps=0.0156863"
    assert all(isinstance(p["flagged"], bool) for p in doc["predictions"])
    # Saved under the instance folder (det.save): a restarted server loads it instead of fitting.
    assert list((instance / "detectors" / "brain-tumor-cnn").glob("web-test-supervised-*.npz"))
    restarted = create_app({"EGIDE_INSTANCE_PATH": str(instance), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    try:
        loaded = predict(restarted.test_client(), scans[:2], detector="web-test-supervised").get_json()
    finally:
        restarted.extensions["egide"].runner.shutdown()
    assert len(CALLS["supervised"]) == 1  # not fitted again
    assert loaded["detector"]["threshold"] == doc["detector"]["threshold"] and loaded["detector"]["fitted"] is None
    assert [p["flagged"] for p in loaded["predictions"]] == [p["flagged"] for p in doc["predictions"]]


def test_predict_detector_errors_are_422_at_the_field(client, scans):
    doc = problem(predict(client, scans[:1], detector="example-max-softmx"))
    assert doc["errors"][0]["loc"] == ["detector"] and "example-max-softmax" in doc["errors"][0]["msg"]
    doc = problem(predict(client, scans[:1], detector="example-max-softmax", detector_params="{fpr"))
    assert doc["errors"][0]["loc"] == ["detector_params"] and doc["errors"][0]["type"] == "json_invalid"
    doc = problem(predict(client, scans[:1], detector="example-max-softmax", detector_params='{"fpr": 2}'))
    assert doc["errors"][0]["loc"] == ["detector_params", "fpr"]
    doc = problem(predict(client, scans[:1], detector_params='{"fpr": 0.1}'))
    assert doc["errors"][0]["loc"] == ["detector_params"]


def test_evaluation_defenses_and_detectors_are_checked_before_the_job(client):
    def config(**extra):
        return {"kind": "evaluate", "config": {"attacks": [{"plugin": "fgsm"}], "eps": [EPS], "limit": 4, **extra}}

    doc = problem(client.post("/api/v1/jobs", json=config(defenses=[{"plugin": "web-test-quantise",
                                                                      "params": {"levels": 0}}])))
    assert doc["errors"][0]["loc"] == ["config", "defenses", 0, "params", "levels"]
    doc = problem(client.post("/api/v1/jobs", json=config(defenses=[{"plugin": "web-test-trainer"}])))
    assert doc["errors"][0]["loc"] == ["config", "defenses", 0, "plugin"]
    doc = problem(client.post("/api/v1/jobs", json=config(detectors=[{"plugin": "no-such-detector"}])))
    assert doc["errors"][0]["loc"] == ["config", "detectors", 0, "plugin"]
    # Where jobs run is the server's choice, never a client's (no pointing it at another cluster).
    doc = problem(client.post("/api/v1/jobs", json=config(executor={"ray": "10.0.0.9:6379"})))
    assert doc["errors"][0]["loc"] == ["config", "executor"] and "server decides" in doc["errors"][0]["msg"]


def test_a_rerun_defend_job_starts_from_the_checkpoint_it_left(tmp_path, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0})
    try:
        st = app.extensions["egide"]
        old = st.store.create("defend", {"kind": "defend", "plugin": "web-test-trainer", "params": {}})
        (st.job_dir / old).mkdir()
        (st.job_dir / old / "checkpoint.npz").write_bytes(b"the state after epoch 3")
        st.store.finish(old, "interrupted", error="the server stopped")
        resp = app.test_client().post(f"/api/v1/jobs/{old}/rerun")
        assert resp.status_code == 202, resp.get_json()
        new = resp.get_json()["id"]
        # In place before the job is queued, so the trainer resumes instead of starting over.
        assert (st.job_dir / new / "checkpoint.npz").read_bytes() == b"the state after epoch 3"
    finally:
        app.extensions["egide"].runner.shutdown()


def test_a_defend_job_runs_a_real_trainer(client, registry):
    """The shipped trainer base (core/trainer.py) through the same generic path, when installed."""
    trainers = [c for c in registry.plugins("defense")
                if getattr(c, "needs_training_data", False) and c.__module__.startswith("egide.")]
    assert trainers, "the built-in trainers (adversarial-training, ...) are missing"
    cls = trainers[0]
    params = {k: v for k, v in {"epochs": 1, "batch_size": 32, "steps": 1, "val_steps": 1}.items()
              if k in cls.Params.model_fields}
    job = run(client, {"kind": "defend", "plugin": cls.name, "params": params, "limit": 32})
    assert job["result"]["train_images"] == 32 and job["result"]["model"].startswith("upload-")
    assert "model.keras" in job["artifacts"]


def test_an_evaluation_with_a_defense_and_a_detector_gives_their_numbers_and_roc(client):
    job = run(client, {"kind": "evaluate", "config": {
        "attacks": [{"plugin": "fgsm"}], "eps": [0.03], "limit": 16, "sanity_checks": False, "gallery": 0,
        "defenses": [{"plugin": "web-test-quantise", "params": {"levels": 16}}],
        "detectors": [{"plugin": "example-max-softmax"}], "detector_fit_limit": 64}})
    s = job["result"]
    [defense] = s["defenses"]
    assert defense["plugin"] == "web-test-quantise"
    assert set(defense["worst_case_robust_accuracy"]["0.03"]) == {"non_adaptive", "adaptive"}
    [detector] = s["detectors"]
    assert detector["plugin"] == "example-max-softmax" and detector["runs"][0]["attack"] == "fgsm"
    assert 0 <= detector["runs"][0]["roc_auc"] <= 1
    # Attacked adaptively by default: guarded robust accuracy with and without knowing the detector.
    [guard] = detector["guard"]
    assert guard["eps_text"] == "0.03" and guard["adaptive"] <= guard["non_adaptive"]
    assert guard["through"].startswith("surrogate feature-squeezing") and isinstance(guard["falls"], bool)
    roc = client.get(job["artifacts"]["roc-example-max-softmax.png"])
    assert roc.mimetype == "image/png" and roc.data.startswith(b"\x89PNG")
