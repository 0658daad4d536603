"""What a volume looks like on a page: its three orthogonal mid-slices side by side.

A volume (D, H, W, C) is stored in display order (axial slices from inferior to superior, rows
anterior to posterior, columns from the patient's right to left, as egide's loaders and phantom
write them). The picture is the axial, coronal and sagittal slices through the centre, the last
two turned so that superior is up, on one canvas with a thin gap; an image (H, W, C) is itself.
Where an attack changed a volume most is another slice: `most_perturbed_slice` finds it.
"""

from __future__ import annotations

import numpy as np

GAP = 2  # pixels between the three views


def as_picture(image: np.ndarray, gap_value: float = 0.0) -> np.ndarray:
    """(H, W, C) as it is; a volume (D, H, W, C) as its three mid-slices (rows, cols, C)."""
    image = np.asarray(image)
    if image.ndim != 4:
        return image
    d, h, w, c = image.shape
    views = [image[d // 2], image[::-1, h // 2], image[::-1, :, w // 2]]  # axial, coronal, sagittal
    rows = max(v.shape[0] for v in views)
    canvas = np.full((rows, sum(v.shape[1] for v in views) + GAP * 2, c), gap_value, image.dtype)
    at = 0
    for view in views:
        top = (rows - view.shape[0]) // 2
        canvas[top:top + view.shape[0], at:at + view.shape[1]] = view
        at += view.shape[1] + GAP
    return canvas


def most_perturbed_slice(delta: np.ndarray) -> int:
    """The axial slice (index along D) of a volume's change (D, H, W, C) with the largest sum of
    squares: where the attack concentrated its budget (the mid-slices may miss it)."""
    delta = np.asarray(delta, np.float64)
    return int(np.argmax(np.square(delta).reshape(delta.shape[0], -1).sum(1)))
