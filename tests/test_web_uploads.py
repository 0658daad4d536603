"""Uploads: POST /api/v1/models (.keras/.h5 in Keras safe mode; pickles and SavedModels refused)
and POST /api/v1/datasets (.npz without pickles, or a zip of class folders extracted safely).
Uploads are listed with "source": "upload" and usable by name in /predict and in jobs."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from egide.web import create_app

from web_jobs import wait

PROBLEM = "application/problem+json"
DEMO = "egide.plugins.models.brain_tumor_cnn"


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path_factory.mktemp("inst")),
                      "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 0,
                      "EGIDE_MAX_MODEL_BYTES": 3_000_000, "EGIDE_MAX_DATASET_BYTES": 1_000_000,
                      "EGIDE_MAX_DATASET_FILES": 50, "EGIDE_MAX_DATASET_UNPACKED": 2_000_000,
                      "EGIDE_MAX_PIXELS": 1_000_000, "EGIDE_MAX_DATASET_PIXELS": 3_000_000})
    yield app
    app.extensions["egide"].runner.shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def demo_bytes():
    import importlib

    return importlib.import_module(DEMO).WEIGHTS.read_bytes()


@pytest.fixture(scope="module")
def phantom(registry):
    return registry.create("dataset", "brain-tumor-phantom").load(split="test").take(8)


def send(client, path, name, payload, **form):
    return client.post(path, data={"file": (io.BytesIO(payload), name), **form},
                       content_type="multipart/form-data")


def problem(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    return resp.get_json()


def left_over(app, kind):
    return sorted(p.name for p in (app.extensions["egide"].resources.uploads.root / kind).iterdir())


def png(pixels) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.asarray(pixels)[..., 0] * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def zipped(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            if isinstance(data, zipfile.ZipInfo):
                z.writestr(data, b"x")
            else:
                z.writestr(name, data)
    return buf.getvalue()


def test_upload_a_keras_model_and_use_it_by_name(app, client, demo_bytes, phantom):
    names = ",".join(phantom.class_names)
    resp = send(client, "/api/v1/models", "my model.keras", demo_bytes, class_names=names)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    name = doc["name"]
    assert name.startswith("upload-") and doc["source"] == "upload" and doc["input_shape"] == [64, 64, 1]
    listed = {m["name"]: m for m in client.get("/api/v1/models").get_json()["models"]}
    assert listed[name]["source"] == "upload" and listed["brain-tumor-cnn"]["source"] == "builtin"

    buf = io.BytesIO()
    np.save(buf, phantom.x[0])
    pred = client.post("/api/v1/predict", data={"model": name, "image": (io.BytesIO(buf.getvalue()), "a.npy")},
                       content_type="multipart/form-data").get_json()
    assert pred["model"] == name and pred["class_names"] == list(phantom.class_names)
    job = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "model": name, "limit": 2})
    assert job.status_code == 202, job.get_data(as_text=True)
    # A new app on the same instance folder still knows it.
    again = create_app({"EGIDE_INSTANCE_PATH": app.instance_path, "EGIDE_REGISTRY": app.extensions["egide"].registry,
                        "EGIDE_WORKERS": 0})
    assert name in [m["name"] for m in again.test_client().get("/api/v1/models").get_json()["models"]]
    again.extensions["egide"].runner.shutdown()


def test_a_small_file_declaring_a_huge_model_is_refused_at_upload(app, client, tmp_path):
    import keras

    huge = keras.Sequential([keras.Input((8192, 8192, 3)), keras.layers.Conv2D(1, 3),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    huge.save(tmp_path / "huge.keras")
    assert (tmp_path / "huge.keras").stat().st_size < 50_000
    before = left_over(app, "models")
    doc = problem(send(client, "/api/v1/models", "huge.keras", (tmp_path / "huge.keras").read_bytes()), 413)
    assert doc["limit"] == "input" and "201,326,592 input values per image" in doc["detail"]
    assert left_over(app, "models") == before  # nothing kept
    wide = keras.Sequential([keras.Input((512, 512, 1)), keras.layers.Conv2D(300, 3),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    wide.save(tmp_path / "wide.keras")
    doc = problem(send(client, "/api/v1/models", "wide.keras", (tmp_path / "wide.keras").read_bytes()), 413)
    assert doc["limit"] == "activations" and "EGIDE_MAX_MODEL_ACTIVATIONS" in doc["detail"]


def test_h5_model_upload(client, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model.save(tmp_path / "m.h5")
    doc = send(client, "/api/v1/models", "m.h5", (tmp_path / "m.h5").read_bytes()).get_json()
    assert doc["name"].startswith("upload-") and doc["num_classes"] == 3


def test_an_uploaded_models_input_range_is_read_or_declared_and_kept(app, client, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.save(tmp_path / "r.keras")
    payload = (tmp_path / "r.keras").read_bytes()
    detected = send(client, "/api/v1/models", "r.keras", payload).get_json()
    assert detected["input_range"] == [0, 255] and detected["input_range_source"].startswith("detected: Rescaling")
    declared = send(client, "/api/v1/models", "r.keras", payload, input_range="0,1").get_json()
    assert declared["input_range"] == [0, 1] and declared["input_range_source"] == "declared"
    # Kept across a restart: the declared range is not replaced by the detected one.
    again = create_app({"EGIDE_INSTANCE_PATH": app.instance_path, "EGIDE_REGISTRY": app.extensions["egide"].registry,
                        "EGIDE_WORKERS": 0})
    assert again.extensions["egide"].resources.classifier(declared["name"]).input_range == (0.0, 1.0)
    again.extensions["egide"].runner.shutdown()
    bad = problem(send(client, "/api/v1/models", "r.keras", payload, input_range="255,0"), 422)
    assert "input_range" in str(bad) and "LOW must be below HIGH" in str(bad)
    assert not [n for n in left_over(app, "models") if n.endswith(".part")]


@pytest.mark.parametrize("name,payload,words", [
    ("model.pkl", b"\x80\x04K\x01.", "pickles"),
    ("saved_model.zip", zipped({"saved_model.pb": b"x"}), "SavedModel"),
    ("model.pb", b"x", "SavedModel"),
    ("model.onnx", b"x", "not a valid ONNX model"),
    ("fake.keras", b"not a zip at all", "not a .keras archive"),
    ("junk.keras", zipped({"config.json": b"{nonsense"}), "safe mode"),
    ("fake.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "safe mode"),
    ("evil.keras", zipped({"../../etc/x": b"x"}), "unsafe path"),
])
def test_refused_models_are_422_and_leave_nothing(app, client, name, payload, words):
    before = left_over(app, "models")
    doc = problem(send(client, "/api/v1/models", name, payload), 422)
    assert words in doc["detail"] and doc["errors"][0]["loc"] == ["file"]
    assert left_over(app, "models") == before


def test_a_lambda_layer_model_is_refused_by_safe_mode(app, client, tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Lambda(lambda t: t * 2),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(tmp_path / "lam.keras")
    doc = problem(send(client, "/api/v1/models", "lam.keras", (tmp_path / "lam.keras").read_bytes()), 422)
    assert "safe mode" in doc["detail"]


def test_model_size_and_missing_file(client):
    problem(send(client, "/api/v1/models", "big.keras", b"PK\x03\x04" + b"\0" * 3_200_000), 413)
    problem(client.post("/api/v1/models", data={}, content_type="multipart/form-data"), 422)


def test_upload_an_npz_data_set_with_splits(client, phantom):
    buf = io.BytesIO()
    np.savez(buf, x_train=phantom.x[:4], y_train=phantom.y[:4], x_test=phantom.x[4:], y_test=phantom.y[4:],
             class_names=np.array(phantom.class_names))
    resp = send(client, "/api/v1/datasets", "mine.npz", buf.getvalue())
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["splits"] == ["test", "train"] and doc["images"] == {"test": 4, "train": 4}
    listed = {d["name"]: d for d in client.get("/api/v1/datasets").get_json()["datasets"]}
    assert listed[doc["name"]]["source"] == "upload"
    ok = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "data": doc["name"], "split": "test"})
    assert ok.status_code == 202, ok.get_data(as_text=True)
    bad = problem(client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "data": doc["name"],
                                                   "split": "val"}), 422)
    assert bad["errors"][0]["loc"] == ["split"]


@pytest.fixture(scope="module")
def every_class(registry):
    """Two test images of each class of the phantom."""
    full = registry.create("dataset", "brain-tumor-phantom").load(split="test")
    picks = [i for k in range(len(full.class_names)) for i in np.flatnonzero(full.y == k)[:2]]
    return full.x[picks], full.y[picks], list(full.class_names)


def test_upload_a_zip_of_class_folders(app, client, every_class):
    x, y, names = every_class
    entries = {f"scans/{names[int(label)]}/{i}.png": png(image) for i, (image, label) in enumerate(zip(x, y))}
    entries["__MACOSX/._junk"] = b"x"
    resp = send(client, "/api/v1/datasets", "scans.zip", zipped(entries))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["splits"] == [] and doc["images"] == {"all": 8} and doc["image_shape"] == [64, 64, 1]
    job = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "data": doc["name"]})
    assert job.status_code == 202, job.get_data(as_text=True)


def test_upload_a_zip_of_dicom_class_folders_with_named_splits(app, client):
    from pathlib import Path

    import pydicom

    mr = (Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm").read_bytes()
    entries = {f"Training/{c}/{i}.dcm": mr for c in ("glioma", "meningioma", "notumor", "pituitary") for i in range(2)}
    entries.update({f"Testing/{c}/0.dcm": mr for c in ("glioma", "meningioma", "notumor", "pituitary")})
    resp = send(client, "/api/v1/datasets", "scans.zip", zipped(entries))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["images"] == {"Testing": 4, "Training": 8} and doc["image_shape"] == [64, 64, 1]
    job = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "data": doc["name"], "split": "test"})
    assert job.status_code == 202, job.get_data(as_text=True)
    truncated = problem(send(client, "/api/v1/datasets", "bad.zip", zipped({"a/x.dcm": mr[:100], "b/y.dcm": mr})), 422)
    assert "a/x.dcm is not a readable DICOM file" in truncated["detail"]


def blank(w, h) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, "PNG")
    return buf.getvalue()


def evil_link():
    info = zipfile.ZipInfo("a/link.png")
    info.external_attr = (0o120777 << 16)
    return info


def bad_crc() -> bytes:
    """A stored (uncompressed) zip whose member's bytes were changed after its CRC was written."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("c/a.png", blank(8, 8))
        z.writestr("d/b.png", blank(8, 8))
    data = bytearray(buf.getvalue())
    data[data.find(b"IDAT") + 6] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("name,payload,status,words", [
    ("up.zip", zipped({"../evil/a.png": b"x"}), 422, "unsafe path"),
    ("abs.zip", zipped({"/etc/a/b.png": b"x"}), 422, "unsafe path"),
    ("link.zip", zipped({"a/link.png": evil_link()}), 422, "unsafe path"),
    ("many.zip", zipped({f"c/{i}.png": b"x" for i in range(60)}), 413, "entries"),
    ("bomb.zip", zipped({"c/a.png": b"\0" * 2_100_000}), 413, "unpacks"),
    ("text.zip", zipped({"c/readme.txt": b"x"}), 422, "not a PNG or JPEG"),
    ("huge.zip", zipped({"c/a.png": blank(1200, 1000)}), 413, "pixels"),
    ("sum.zip", zipped({f"c/{i}.png": blank(1000, 1000) for i in range(4)}), 413, "together"),
    ("notpng.zip", zipped({"c/a.png": b"garbage"}), 422, "not a readable image"),
    ("crc.zip", bad_crc(), 422, "c/a.png is damaged in the archive (Bad CRC-32"),
    ("clash.zip", zipped({"c/x.png": b"x", "c/x.png/y.png": b"x"}), 422, "c/x.png is both a file and a folder"),
    ("pickled.npz", None, 422, "pickled.npz"),
    ("data.csv", b"1,2,3", 422, ".npz"),
    ("broken.npz", b"PK\x03\x04garbage", 422, "zip"),
])
def test_refused_data_sets_leave_nothing(app, client, name, payload, status, words):
    if payload is None:
        buf = io.BytesIO()
        np.savez(buf, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
        payload = buf.getvalue()
    before = left_over(app, "datasets")
    doc = problem(send(client, "/api/v1/datasets", name, payload), status)
    assert words in doc["detail"]
    assert left_over(app, "datasets") == before


def test_the_page_offers_uploaded_models_and_data(client):
    html = client.get("/").get_data(as_text=True)
    models = [m["name"] for m in client.get("/api/v1/models").get_json()["models"] if m["source"] == "upload"]
    assert models and all(f'value="{m}"' in html for m in models)
    data = [d for d in client.get("/api/v1/datasets").get_json()["datasets"] if d["source"] == "upload"]
    assert data and all(f'value="{d["name"]}"' in html for d in data)


def test_a_job_runs_on_an_uploaded_model_and_data_set(tmp_path, registry, demo_bytes, phantom, every_class):
    app = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry, "EGIDE_WORKERS": 1})
    try:
        client = app.test_client()
        model = send(client, "/api/v1/models", "cnn.keras", demo_bytes).get_json()["name"]
        x, y, names = every_class
        entries = {f"{names[int(label)]}/{i}.png": png(image) for i, (image, label) in enumerate(zip(x, y))}
        data = send(client, "/api/v1/datasets", "scans.zip", zipped(entries)).get_json()["name"]
        # A data set whose classes do not match the model is refused at submission, not in the job.
        three = send(client, "/api/v1/datasets", "three.zip", zipped(
            {f"{phantom.class_names[int(y)]}/{i}.png": png(x) for i, (x, y) in enumerate(zip(phantom.x, phantom.y))}
        )).get_json()["name"]
        bad = problem(client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "model": model,
                                                        "data": three}), 422)
        assert bad["errors"][0]["loc"] == ["data"] and "3 classes" in bad["detail"]
        bad = problem(client.post("/api/v1/jobs", json={"kind": "evaluate", "config": {"data": three}}), 422)
        assert bad["errors"][0]["loc"] == ["config", "data"]
        resp = client.post("/api/v1/jobs", json={"kind": "attack", "plugin": "fgsm", "params": {"eps": 0.0157},
                                                 "model": model, "data": data, "limit": 4})
        assert resp.status_code == 202, resp.get_data(as_text=True)
        job = wait(client, resp.get_json()["url"], timeout=60)
        assert job["state"] == "done", job["error"]
        assert job["result"]["images"] == 4
    finally:
        app.extensions["egide"].runner.shutdown()


def test_a_zip_of_scans_of_several_sizes_is_kept_and_resized_to_each_model(tmp_path, registry, every_class):
    """What a plain load refuses (images of several sizes) an upload keeps: each job resizes the
    scans to its model's input, and the evaluation's report says which sizes there were."""
    from PIL import Image

    running = create_app({"EGIDE_INSTANCE_PATH": str(tmp_path), "EGIDE_REGISTRY": registry})  # jobs run
    client = running.test_client()

    x, y, names = every_class
    entries = {f"scans/{names[int(label)]}/{i}.png": png(image) for i, (image, label) in enumerate(zip(x, y))}
    wide = Image.fromarray((x[0, ..., 0] * 255).astype("uint8")).resize((96, 80))
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    entries[f"scans/{names[int(y[0])]}/wide.png"] = buffer.getvalue()
    resp = send(client, "/api/v1/datasets", "mixed.zip", zipped(entries))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    doc = resp.get_json()
    assert doc["images"] == {"all": 9} and doc["image_shape"] == [64, 64, 1]
    assert "64x64: 8" in doc["mixed_sizes"] and "80x96: 1 (e.g. " in doc["mixed_sizes"]
    config = {"data": doc["name"], "attacks": [{"plugin": "fgsm"}], "eps": [4 / 255], "gallery": 0,
              "sanity_checks": False}
    job = wait(client, client.post("/api/v1/jobs", json={"kind": "evaluate", "config": config}).get_json()["url"],
               timeout=180)
    assert job["state"] == "done", job["error"]
    report = client.get(job["url"] + "/artifacts/report.json").get_json()
    assert report["data"]["images"] == 9 and report["data"]["mixed_sizes"] == doc["mixed_sizes"]
    running.extensions["egide"].runner.shutdown()
