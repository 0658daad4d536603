"""What exactly was tested, as fingerprints anyone can recompute: SHA-256 of the model file and of
the evaluated images and labels, in a defined order.

The images' digest covers a header naming the layout, then each image's float32 values in
row-major (N, H, W, C) order, in the order the evaluation took them (the order its report lists);
the labels' digest covers their int64 values in the same order. The header makes the digest
change when the same bytes are read as another shape.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

CHUNK = 1 << 20  # bytes read at a time: a model file of any size hashes in flat memory
IMAGES_LAYOUT = "egide-images-v1 float32 NHWC"
LABELS_LAYOUT = "egide-labels-v1 int64"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def images_sha256(x: np.ndarray) -> str:
    """SHA-256 of images (N, H, W, C) or volumes (N, D, H, W, C) in the given order, as float32
    (see the module's note)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim not in (4, 5):
        raise ValueError(f"images must be (N, H, W, C) or (N, D, H, W, C); got shape {x.shape}")
    digest = hashlib.sha256(f"{IMAGES_LAYOUT} {'x'.join(map(str, x.shape))}\n".encode())
    for image in x:  # one image at a time: no second copy of the whole set
        digest.update(image.tobytes())
    return digest.hexdigest()


def labels_sha256(y: np.ndarray) -> str:
    """SHA-256 of integer labels in the given order, as int64."""
    y = np.ascontiguousarray(y, dtype=np.int64).ravel()
    return hashlib.sha256(f"{LABELS_LAYOUT} {len(y)}\n".encode() + y.tobytes()).hexdigest()
