"""POST /api/v1/predict: PNG, JPEG and .npy uploads classified by a named model, with bounds
on bytes, pixels and image count; every bad upload is a 4xx problem, never a 500."""

from __future__ import annotations

import io

import numpy as np
import pytest

from egide.web import create_app

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")),
                      "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0,
                      "EGIDE_MAX_UPLOAD_BYTES": 2_000_000, "EGIDE_MAX_PIXELS": 1_000_000,
                      "EGIDE_MAX_PREDICT_IMAGES": 4})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def demo(registry):
    data = registry.create("dataset", "brain-tumor-phantom").load(split="test").take(8)
    clf = registry.create("model", "brain-tumor-cnn").load()
    return data, clf


def png(pixels: np.ndarray, mode=None, fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    arr = (np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr, mode).save(buf, fmt)
    return buf.getvalue()


def npy(x) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def post(client, files, **form):
    data = dict(form)
    data["image"] = [(io.BytesIO(b), name) for name, b in files]
    return client.post("/api/v1/predict", data=data, content_type="multipart/form-data")


def problem(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    return resp.get_json()


def test_predict_pngs_and_npy_match_the_model(client, demo):
    data, clf = demo
    files = [(f"scan{i}.png", png(data.x[i])) for i in range(2)] + [("scan2.npy", npy(data.x[2]))]
    resp = post(client, files)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["model"] == "brain-tumor-cnn" and doc["input_shape"] == [64, 64, 1]
    assert doc["class_names"] == list(data.class_names)
    expected = clf.predict(data.x[:3])
    for i, p in enumerate(doc["predictions"]):
        assert p["file"] == files[i][0]
        assert p["label"] == int(expected[i]) and p["class_name"] == data.class_names[p["label"]]
        assert abs(sum(p["confidences"].values()) - 1) < 1e-6
        assert max(p["confidences"], key=p["confidences"].get) == p["class_name"]
        assert p["resized_from"] == [64, 64] and p["resized"] is False
    assert doc["detector"] is None


def test_rgb_jpeg_of_another_size_is_converted_and_says_so(client, demo):
    data, _ = demo
    rgb = np.repeat(np.kron(data.x[0], np.ones((2, 2, 1))), 3, axis=-1)  # 128x128 RGB
    doc = post(client, [("big.jpg", png(rgb, fmt="JPEG"))], model="brain-tumor-cnn").get_json()
    p = doc["predictions"][0]
    assert p["resized_from"] == [128, 128] and p["resized"] is True
    assert p["class_name"] in doc["class_names"]


def test_a_dicom_file_and_a_nifti_volume_are_predicted_as_the_loaders_read_them(client, demo):
    from pathlib import Path

    import nibabel
    import pydicom

    from egide.lab.data import dicom, nifti

    _, clf = demo
    mr = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    volume = Path(nibabel.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    resp = post(client, [("mr.dcm", mr.read_bytes()), ("series.nii.gz", volume.read_bytes())])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    by_file = {p["file"]: p for p in resp.get_json()["predictions"]}
    expected = clf.predict(dicom.read_dicom(mr))[0]  # 64x64 gray: the demo's own input
    assert by_file["mr.dcm"]["label"] == int(expected) and by_file["mr.dcm"]["resized"] is False
    slices = nifti.read_nifti(volume)
    assert by_file["series.nii.gz"]["resized_from"] == list(slices.shape[1:3])
    bad = problem(post(client, [("cut.dcm", mr.read_bytes()[:600])]), 422)
    assert "cut.dcm" in bad["detail"] and "DICOM" in bad["detail"]


def test_an_unknown_detector_is_a_clear_422(client, demo, registry):
    data, _ = demo
    doc = problem(post(client, [("a.png", png(data.x[0]))], detector="no-such-detector"), 422)
    assert doc["errors"][0]["loc"] == ["detector"] and "no-such-detector" in doc["detail"]
    for name in registry.names("detector"):
        assert name in doc["detail"]  # the installed ones are named


@pytest.mark.parametrize("name,payload,status,words", [
    ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 422, "broken.png"),
    ("notes.txt", b"hello, not an image", 422, "a PNG or JPEG image, a DICOM file (.dcm), a NIfTI volume (.nii, .nii.gz) or a .npy"),
    ("empty.png", b"", 422, "empty"),
    ("ints.npy", npy(np.zeros((8, 8), np.int64)), 422, "floats"),
    ("hot.npy", npy(np.full((8, 8), 3.0, np.float32)), 422, "[0, 1]"),
    ("cube.npy", npy(np.zeros((2, 8, 8, 1), np.float32)), 422, "(H, W)"),
    ("pickle.npy", npy(np.array([{"a": 1}], dtype=object)), 422, "pickle.npy"),
    ("huge.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (5000, 5000), }"
     .ljust(10 + 118, b" ")[:127] + b"\n", 413, "huge.npy"),
])
def test_bad_uploads_are_problems_naming_the_file(client, name, payload, status, words):
    doc = problem(post(client, [(name, payload)]), status)
    assert name in doc["detail"] and words in doc["detail"]


def test_decompression_bomb_is_413(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, "PNG")  # 4 MP of zeros: tiny file, too many pixels
    assert len(buf.getvalue()) < 100_000
    doc = problem(post(client, [("bomb.png", buf.getvalue())]), 413)
    assert "bomb.png" in doc["detail"]


def test_bounds_on_count_bytes_model_and_missing_files(client, demo):
    data, _ = demo
    one = png(data.x[0])
    doc = problem(post(client, [(f"{i}.png", one) for i in range(5)]), 422)
    assert doc["errors"][0]["loc"] == ["image"] and "at most 4" in doc["detail"]
    problem(post(client, [("big.npy", b"\x93NUMPY" + b"\0" * 2_100_000)]), 413)
    doc = problem(post(client, [("a.png", one)], model="brain-tumor-cnm"), 422)
    assert "Did you mean 'brain-tumor-cnn'" in doc["detail"]
    problem(post(client, []), 422)
    problem(client.post("/api/v1/predict", json={"image": "x"}), 422)


def test_a_requests_pixels_are_bounded_together_and_predict_work_at_once_is_bounded(tmp_path, registry, demo):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0,
                      "EGIDE_MAX_PREDICT_PIXELS": 3_000_000, "EGIDE_PREDICT_CONCURRENCY": 1,
                      "EGIDE_PREDICT_WAIT_S": 0.2})
    client = app.test_client()
    big = png(np.zeros((1200, 1200, 1), np.float32))  # 1.44 MP each, a few KB compressed
    assert post(client, [("a.png", big), ("b.png", big)]).status_code == 200
    doc = problem(post(client, [("a.png", big), ("b.png", big), ("c.png", big)]), 413)
    assert doc["detail"].startswith("c.png: with it the request's images hold more than the 3000000 pixels")
    slots = app.extensions["egide"].predict_slots
    slots.acquire()  # another request is decoding
    try:
        resp = post(client, [("a.png", png(demo[0].x[0]))])
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    finally:
        slots.release()
    assert post(client, [("a.png", png(demo[0].x[0]))]).status_code == 200
    app.extensions["egide"].runner.shutdown()
