"""The user's own study through the JSON API: a zip of Training/Testing class folders (no val
split) and their own model, uploaded; limits drawn per class; detectors fitted on held-out images
that are never evaluated; jobs that cannot run refused at submission; budgets as fractions;
results that stay at their URL; /predict fitted on named data and warning on foreign images."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from web_jobs import until, wait


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from egide.web import create_app

    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("study-instance")), "EGIDE_WORKERS": 1,
                      "EGIDE_DETECTOR_FIT_IMAGES": 64})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def uploaded(client, study_folder, study_zip):
    """The study's model and scans, uploaded as a user would from the page."""
    model = study_folder[0]
    with open(model, "rb") as f:
        m = client.post("/api/v1/models", data={"file": (f, "mine.keras"),
                                                 "class_names": "glioma, meningioma, notumor, pituitary"})
    assert m.status_code == 201, m.get_data(as_text=True)
    d = client.post("/api/v1/datasets", data={"file": (io.BytesIO(study_zip.read_bytes()), "scans.zip")})
    assert d.status_code == 201, d.get_data(as_text=True)
    return m.get_json()["name"], d.get_json()["name"]


def submit(client, body):
    return client.post("/api/v1/jobs", json=body)


def test_detectors_on_a_folder_without_val_are_fitted_on_held_out_images(client, uploaded):
    model, data = uploaded
    resp = submit(client, {"kind": "evaluate", "config": {
        "model": model, "data": data, "split": "Testing", "limit": 48, "attacks": [{"plugin": "fgsm"}],
        "eps": ["4/255"], "detectors": [{"plugin": "feature-squeezing"}], "adaptive_detectors": False,
        "gallery": 0}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = wait(client, resp.get_json()["url"], timeout=300)
    assert job["state"] == "done", job["error"]
    report = json.loads(client.get(job["artifacts"]["report.json"]).data)
    subset, fit = report["data"]["subset"], report["data"]["detector_fit"]
    assert subset["class_counts"] == {"glioma": 12, "meningioma": 12, "notumor": 12, "pituitary": 12}
    assert fit["held_out"] and fit["split"] == "Testing" and fit["images"] == 120 - 48
    assert not set(fit["indices"]) & set(subset["indices"])  # never fitted on an evaluated image
    assert "held out of the evaluated 'Testing' split" in job["result"]["detector_fit"]
    assert report["detectors"][0]["detector"]["plugin"] == "feature-squeezing"
    assert report["detectors"][0]["fit_images"] == 120 - 48


def test_detectors_that_cannot_be_fitted_are_refused_at_submission(client, uploaded):
    model, data = uploaded
    resp = submit(client, {"kind": "evaluate", "config": {
        "model": model, "data": data, "split": "Testing", "attacks": [{"plugin": "fgsm"}], "eps": [0.01],
        "detectors": [{"plugin": "feature-squeezing"}], "detector_fit_split": "validation"}})
    assert resp.status_code == 422  # never accepted, then failed
    error = resp.get_json()["errors"][0]
    assert error["loc"] == ["config", "detector_fit_split"]
    assert "no 'validation' split (its splits: Testing, Training)" in error["msg"]


def test_a_split_too_small_to_hold_images_out_says_so():
    from egide.lab.evaluation.images import held_out_problem
    from egide.lab.evaluation.pipeline import EvaluationConfig

    config = EvaluationConfig(model="m", data="d", split="test", detectors=[{"plugin": "feature-squeezing"}])
    assert held_out_problem(config, 48) is None  # a third: 16 held out
    assert "has 30 images, too few to hold out 16" in held_out_problem(config, 30)
    assert held_out_problem(config.model_copy(update={"limit": 10}), 30) is None  # 20 left to hold out


def test_budgets_as_fractions_in_every_request(client):
    resp = submit(client, {"kind": "attack", "plugin": "fgsm", "params": {"eps": "2/255"}, "limit": 4})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = wait(client, resp.get_json()["url"])
    assert job["request"]["params"]["eps"] == pytest.approx(2 / 255)
    assert job["result"]["linf_max"] <= 2 / 255 + 1e-6
    half = submit(client, {"kind": "evaluate", "config": {"attacks": [{"plugin": "fgsm"}], "eps": ["0.5/255", 0.01],
                                                          "limit": 4, "sanity_checks": False, "gallery": 0}})
    assert half.status_code == 202
    job = wait(client, half.get_json()["url"])
    assert set(job["result"]["worst_case_robust_accuracy"]) == {"0.5/255", "0.01"}
    bad = submit(client, {"kind": "attack", "plugin": "fgsm", "params": {"eps": "4/zero"}})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["loc"] == ["params", "eps"]
    assert "fraction (4/255)" in bad.get_json()["errors"][0]["msg"]


def test_a_finished_job_stays_at_its_urls_until_deleted(client):
    resp = submit(client, {"kind": "evaluate", "config": {"attacks": [{"plugin": "fgsm"}], "eps": ["4/255"],
                                                          "limit": 8, "gallery": 0}})
    job = wait(client, resp.get_json()["url"])
    links = job["links"]
    assert links["page"] == f"/?job={job['id']}" and links["report"].endswith("/artifacts/report.html")
    report = client.get(links["report"])
    assert report.status_code == 200 and b"robustness report" in report.data
    # Its robustness card, beside the report: the page, the PDF (a real one) and the data.
    card = client.get(links["card"])
    assert card.status_code == 200 and b"Robustness card" in card.data
    pdf = client.get(links["card_pdf"])
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")
    data = client.get(job["artifacts"]["card.json"]).get_json()
    assert data["accuracy"]["clean"]["n"] == 8 and data["flips"]["negative_class"] == "notumor"
    assert len(data["identity"]["model_sha256"]) == 64  # the server's model file, hashed
    page = client.get(links["page"])
    assert page.status_code == 200
    listed = client.get("/api/v1/jobs").get_json()["jobs"]
    assert next(j for j in listed if j["id"] == job["id"])["links"]["report"] == links["report"]
    assert client.delete(job["url"]).status_code == 204
    assert client.get(links["report"]).status_code == 404 and client.get(job["url"]).status_code == 404


def test_predict_with_an_uploaded_model_asks_for_its_data_then_uses_it(client, uploaded, study_folder):
    from PIL import Image

    model, data = uploaded
    scan = next(study_folder[1].glob("Testing/glioma/*.png"))

    def post(extra):
        with open(scan, "rb") as f:
            return client.post("/api/v1/predict", data={"image": (f, scan.name), "model": model, **extra})

    refused = post({"detector": "feature-squeezing"})
    assert refused.status_code == 422
    error = refused.get_json()["errors"][0]
    assert error["loc"] == ["reference_data"] and "name a data set" in error["msg"]
    unchecked = post({}).get_json()["out_of_distribution"]
    assert not unchecked["checked"] and "name it in reference_data" in unchecked["why"]

    def fitted():
        r = post({"detector": "feature-squeezing", "reference_data": data})
        return r if r.status_code == 200 else None

    answers = []
    until(lambda: answers.append(fitted()) or answers[-1], timeout=120, what="the detector fitted on the named data")
    doc = answers[-1].get_json()
    assert doc["detector"]["fitted"]["data"] == data and doc["detector"]["fitted"]["split"] == "Training"
    assert "flagged" in doc["predictions"][0]
    assert doc["out_of_distribution"]["checked"] and doc["out_of_distribution"]["reference"]["data"] == data

    # Noise looks nothing like a brain MRI: warned, although the model still answers.
    noise = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(noise, format="PNG")
    odd = client.post("/api/v1/predict", data={"image": (io.BytesIO(noise.getvalue()), "noise.png"),
                                               "model": model, "reference_data": data}).get_json()
    assert odd["predictions"][0]["out_of_distribution"] is True
    assert odd["predictions"][0]["ood_distance"] > odd["out_of_distribution"]["threshold"]


def test_an_unknown_reference_data_set_is_a_422_at_its_field(client, study_folder):
    scan = next(study_folder[1].glob("Testing/glioma/*.png"))
    with open(scan, "rb") as f:
        resp = client.post("/api/v1/predict", data={"image": (f, scan.name), "reference_data": "scanz"})
    assert resp.status_code == 422
    error = resp.get_json()["errors"][0]
    assert error["loc"] == ["reference_data"] and "no data set named 'scanz'" in error["msg"]
