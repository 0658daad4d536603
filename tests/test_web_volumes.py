"""Volumes through the JSON API: a Conv3D model and a zip of NIfTI volumes uploaded, attacked and
evaluated; the job's pictures show each volume as its three mid-slices."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from examples.rods import CLASSES, SIZE, make_rods, train_conv3d
from web_jobs import wait


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from egide.web import create_app

    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("volume-instance")), "EGIDE_WORKERS": 1})
    yield app.test_client()
    app.extensions["egide"].runner.shutdown()


@pytest.fixture(scope="module")
def uploaded(client, tmp_path_factory):
    """A rods Conv3D model (.keras) and a zip of NIfTI volumes, one class folder each, 14^3 voxels:
    not the model's 10^3 grid, so the server resamples them."""
    import nibabel

    folder = tmp_path_factory.mktemp("volume-upload")
    x, y = make_rods(600, seed=1)
    model = train_conv3d(x, y)
    model.save(folder / "rods.keras")
    big, labels = make_rods(12, seed=9)
    big = np.repeat(big[..., 0], 2, axis=1)[:, :14]  # along depth: 2 mm slices of what was 1 mm
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (volume, label) in enumerate(zip(big, labels)):
            # NIfTI axes (x, y, z) from display (z, y, x) with y and x reversed: what read_volume undoes.
            data = volume[:, ::-1, ::-1].transpose(2, 1, 0) * 1000.0
            path = folder / f"{i}.nii.gz"
            nibabel.save(nibabel.Nifti1Image(data.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0])), str(path))
            zf.write(path, f"{CLASSES[label]}/{i}.nii.gz")
    with open(folder / "rods.keras", "rb") as f:
        m = client.post("/api/v1/models", data={"file": (f, "rods.keras"), "class_names": ", ".join(CLASSES)})
    assert m.status_code == 201, m.get_data(as_text=True)
    d = client.post("/api/v1/datasets", data={"file": (io.BytesIO(archive.getvalue()), "volumes.zip")})
    assert d.status_code == 201, d.get_data(as_text=True)
    return m.get_json()["name"], d.get_json()["name"]


def test_an_uploaded_volume_model_is_attacked_on_uploaded_nifti_volumes(client, uploaded):
    model, data = uploaded
    resp = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "pgd", "params": {"eps": 0.1, "steps": 10},
                                             "model": model, "data": data, "limit": 6})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = wait(client, resp.get_json()["url"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["linf_max"] <= 0.1 + 1e-6
    pictures = [name for name in job["artifacts"] if name.endswith(".png")]
    assert pictures
    picture = Image.open(io.BytesIO(client.get(job["artifacts"][pictures[0]]).data))
    assert picture.size == (3 * SIZE + 4, SIZE)  # axial, coronal and sagittal side by side


def test_an_evaluation_of_the_volumes_runs_with_a_3d_median_filter_and_refuses_jpeg_by_name(client, uploaded):
    model, data = uploaded
    resp = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {
        "model": model, "data": data, "attacks": [{"plugin": "pgd", "params": {"steps": 5}}], "eps": [0.05],
        "limit": 6, "gallery": 2, "sanity_checks": False, "defenses": [{"plugin": "median-filter"}]}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = wait(client, resp.get_json()["url"], timeout=300)
    assert job["state"] == "done", job["error"]
    report = client.get(job["links"]["report"]).get_data(as_text=True)
    assert "data:image/png;base64," in report  # the gallery, as mid-slices
    resp = client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {
        "model": model, "data": data, "attacks": [{"plugin": "fgsm"}], "eps": [0.05], "limit": 6, "gallery": 2,
        "sanity_checks": False, "defenses": [{"plugin": "jpeg"}]}})  # refused when it meets the volumes
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job = wait(client, resp.get_json()["url"], timeout=300)
    assert job["state"] == "failed" and "defense 'jpeg' cannot run on volumes" in str(job["error"])
