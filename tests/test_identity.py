"""The card's fingerprints: one changed byte of the model file, one changed pixel or a different
order of the images changes them; the same inputs give the same digest."""

import hashlib

import numpy as np
import pytest

from egide.lab.report.identity import file_sha256, images_sha256, labels_sha256


def test_one_changed_byte_of_the_model_file_changes_its_hash(tmp_path):
    path = tmp_path / "model.keras"
    blob = bytearray(np.random.default_rng(0).bytes(3 << 20))  # more than one read chunk
    path.write_bytes(blob)
    before = file_sha256(path)
    assert before == hashlib.sha256(blob).hexdigest()  # the digest `sha256sum` prints
    blob[len(blob) // 2] ^= 1
    path.write_bytes(blob)
    assert file_sha256(path) != before


def test_the_images_hash_follows_their_values_order_and_shape():
    x = np.random.default_rng(1).random((5, 4, 4, 1)).astype(np.float32)
    digest = images_sha256(x)
    assert images_sha256(x.copy()) == digest and images_sha256(x.astype(np.float64)) == digest
    changed = x.copy()
    changed[3, 2, 1, 0] += 1e-6
    assert images_sha256(changed) != digest
    assert images_sha256(x[::-1]) != digest
    assert images_sha256(x.reshape(5, 2, 8, 1)) != digest
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        images_sha256(x[0])


def test_the_labels_hash_follows_their_order():
    assert labels_sha256(np.array([0, 1, 2])) == labels_sha256([0, 1, 2])
    assert labels_sha256(np.array([0, 1, 2])) != labels_sha256(np.array([2, 1, 0]))
