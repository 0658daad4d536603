"""Shared fixtures: a small synthetic image task and small real CNNs trained once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The example third-party plugin is installed for the tests only (scripts/test.sh puts it in
# .test-plugins/): on this process's path and on every process a test starts.
TEST_PLUGINS = Path(__file__).resolve().parent.parent / ".test-plugins"
if TEST_PLUGINS.is_dir():
    sys.path.insert(0, str(TEST_PLUGINS))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TEST_PLUGINS), os.environ.get("PYTHONPATH")]))
# A built-in (or the installed example plugin) that fails to load fails the run, rather than
# turning the tests that need it into skips; tests of lenient loading pass strict=False.
os.environ.setdefault("EGIDE_STRICT_PLUGINS", "1")

import numpy as np
import pytest

import egide

from examples.bars import CLASSES, SHAPE, make_bars, train_cnn


@pytest.fixture(scope="session")
def bars():
    """(x_train, y_train, x_test, y_test) of the bars task."""
    x_train, y_train = make_bars(1200, seed=1)
    x_test, y_test = make_bars(200, seed=2)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="session")
def cnn_model(bars):
    """A small CNN with a logits output, trained on the bars task (test accuracy ~100%)."""
    x_train, y_train, _, _ = bars
    return train_cnn(x_train, y_train, softmax=False)


@pytest.fixture(scope="session")
def softmax_model(cnn_model):
    """The same network and weights as `cnn_model`, ending in a softmax."""
    import keras

    model = keras.Sequential(
        [keras.Input(SHAPE)]
        + [keras.layers.deserialize(keras.layers.serialize(layer)) for layer in cnn_model.layers[:-1]]
        + [keras.layers.Dense(len(CLASSES), activation="softmax")]
    )
    model.set_weights(cnn_model.get_weights())
    return model


@pytest.fixture(scope="session")
def rods_model():
    """A small Conv3D network (logits) trained on the rods volume task (examples/rods.py)."""
    from examples.rods import make_rods, train_conv3d

    return train_conv3d(*make_rods(600, seed=1))


@pytest.fixture(scope="session")
def rods_model_file(rods_model, tmp_path_factory):
    """`rods_model` saved as a .keras file, as a user uploads it."""
    path = tmp_path_factory.mktemp("rods-model") / "rods.keras"
    rods_model.save(path)
    return path


@pytest.fixture(scope="session")
def clf(cnn_model):
    return egide.Classifier.from_keras(cnn_model, clip=(0.0, 1.0))


@pytest.fixture(scope="session")
def softmax_clf(softmax_model):
    return egide.Classifier.from_keras(softmax_model, clip=(0.0, 1.0))


@pytest.fixture(scope="session")
def test_batch(bars, clf):
    """64 test images that the CNN classifies correctly, with their labels."""
    _, _, x_test, y_test = bars
    keep = clf.predict(x_test) == y_test
    return x_test[keep][:64], y_test[keep][:64]


@pytest.fixture(scope="session")
def registry():
    return egide.registry()


@pytest.fixture(scope="session")
def test_adv(clf, test_batch, registry):
    """The test images' PGD versions (eps 0.1) that fool the CNN: the detector tests' positives."""
    x, y = test_batch
    res = registry.create("attack", "pgd", eps=0.1).run(clf, x, y)
    assert res.success.sum() >= 20  # enough positives for a meaningful AUC
    return res.x_adv[res.success]


@pytest.fixture(scope="session")
def study_folder(tmp_path_factory):
    """A user's own study: a 4-class brain-MRI model file (a copy of the demo's) and a folder of
    PNG scans as the public collections store them, Training/ and Testing/ with one folder per
    class, read class by class. No `val` split. Testing holds 30 scans per class."""
    import shutil

    from PIL import Image

    from egide.plugins.models.brain_tumor_cnn import WEIGHTS

    root = tmp_path_factory.mktemp("study")
    shutil.copy(WEIGHTS, root / "mine.keras")
    source = egide.registry().create("dataset", "brain-tumor-phantom", seed=7, per_class=200)
    for split, folder, per_class in (("test", "Testing", 30), ("val", "Training", 12)):
        ds = source.load(split=split)
        for c, name in enumerate(ds.class_names):
            for i in np.flatnonzero(ds.y == c)[:per_class]:
                path = root / "scans" / folder / name / f"{int(i):04d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((ds.x[i, ..., 0] * 255 + 0.5).astype(np.uint8)).save(path)
    return root / "mine.keras", root / "scans"


@pytest.fixture(scope="session")
def study_zip(study_folder, tmp_path_factory):
    """The study's scans as the .zip of class folders a user uploads (Training/, Testing/)."""
    import zipfile

    scans = study_folder[1]
    archive = tmp_path_factory.mktemp("study-zip") / "scans.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(scans.rglob("*.png")):
            z.write(path, path.relative_to(scans).as_posix())
    return archive
