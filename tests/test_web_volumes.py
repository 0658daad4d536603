"""Volumes through the JSON API: a Conv3D model and a zip of NIfTI volumes uploaded, attacked and
evaluated; the job's pictures show each volume as its three mid-slices."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from examples.rods import CLASSES, SIZE, make_rods
from web_jobs import wait


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from egide.web import create_app

    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("volume-instance")), "EGIDE_WORKERS": 1})
    yield app.test_client()
    app.extensions["egide"].runner.shutdown()


@pytest.fixture(scope="module")
def uploaded(client, rods_model_file, tmp_path_factory):
    """A rods Conv3D model (.keras) and a zip of NIfTI volumes, one class folder each, 14^3 voxels:
    not the model's 10^3 grid, so the server resamples them."""
    import nibabel

    folder = tmp_path_factory.mktemp("volume-upload")
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
    with open(rods_model_file, "rb") as f:
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


def nifti_bytes(volume: np.ndarray, voxel_mm: float) -> bytes:
    """A (D, H, W) display-order volume as the bytes of a .nii file with cubic voxels of voxel_mm."""
    import nibabel

    data = volume[:, ::-1, ::-1].transpose(2, 1, 0) * 1000.0  # the axes read_volume undoes
    image = nibabel.Nifti1Image(data.astype(np.float32), np.diag([voxel_mm] * 3 + [1.0]))
    return image.to_bytes()


def test_predict_reads_each_nifti_volume_whole_onto_the_models_grid(client, uploaded, rods_model):
    """/predict on a model of volumes: a NIfTI volume at twice the resolution (0.5 mm voxels) is
    resampled onto the 10^3 grid and classified as the model classifies the volume itself; a .npy
    volume too; a PNG is refused with what to send instead."""
    model_name, _ = uploaded
    x, _ = make_rods(4, seed=21)
    fine = np.repeat(np.repeat(np.repeat(x[..., 0], 2, 1), 2, 2), 2, 3)  # (4, 20, 20, 20)
    files = [(io.BytesIO(nifti_bytes(v, 0.5)), f"rods-{i}.nii") for i, v in enumerate(fine)]
    npy = io.BytesIO()
    np.save(npy, x[0])
    files.append((io.BytesIO(npy.getvalue()), "rods-0.npy"))
    resp = client.post("/api/v1/predict", data={"model": model_name, "image": files})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["input_shape"] == [SIZE, SIZE, SIZE, 1]
    own = np.argmax(rods_model.predict(x, verbose=0), axis=1)
    got = [p["label"] for p in doc["predictions"]]
    assert got == [*own.tolist(), int(own[0])]
    assert doc["predictions"][0]["resized_from"] == [20, 20, 20] and doc["predictions"][0]["resized"]
    assert doc["predictions"][-1]["resized_from"] == [SIZE, SIZE, SIZE] and not doc["predictions"][-1]["resized"]

    png = io.BytesIO()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(png, format="PNG")
    resp = client.post("/api/v1/predict", data={"model": model_name, "image": [(io.BytesIO(png.getvalue()), "slice.png")]})
    assert resp.status_code == 422
    assert "a model of volumes takes a NIfTI volume" in resp.get_json()["detail"]


def test_a_zip_of_dicom_series_is_uploaded_as_volumes_and_attacked(client, uploaded, tmp_path):
    """<class>/<study>/*.dcm, one file per slice: each study one volume (not split folders of
    slices), attacked on the volume model."""
    from dicom_series_files import axial_series

    model, _ = uploaded
    x, y = make_rods(6, seed=31)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i, (volume, label) in enumerate(zip(x[..., 0], y)):
            study = axial_series(tmp_path / f"study-{i}", (volume * 4000).astype(np.uint16), step=1.0)
            for path in study.iterdir():
                zf.write(path, f"{CLASSES[label]}/study-{i}/{path.name}")
    d = client.post("/api/v1/datasets", data={"file": (io.BytesIO(archive.getvalue()), "series.zip")})
    assert d.status_code == 201, d.get_data(as_text=True)
    meta = d.get_json()
    assert meta["splits"] == [] and meta["images"] == {"all": 6} and meta["image_shape"] == [SIZE, SIZE, SIZE, 1]
    resp = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "params": {"eps": 0.1},
                                             "model": model, "data": meta["name"]})
    job = wait(client, resp.get_json()["url"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["images"] == 6
