"""The flip matrix: every image counted once, and its errors told apart by clinical meaning."""

import numpy as np
import pytest

from egide.lab.report.flips import flip_matrix

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def test_the_matrix_counts_every_image_once_and_names_the_clinical_errors():
    y = np.array([0, 0, 1, 2, 2, 3, 3, 3])
    attacked = np.array([2, 0, 3, 0, 2, 2, 2, 3])
    flips = flip_matrix(y, attacked, CLASSES, negative="notumor")
    assert flips.images == len(y) and flips.counts.sum(axis=1).tolist() == [2, 1, 2, 3]
    assert flips.counts[0, 2] == 1 and flips.counts[3, 2] == 2
    assert flips.missed_findings == 3  # glioma -> notumor, pituitary -> notumor twice
    assert flips.false_alarms == 1  # notumor -> glioma
    assert flips.wrong_findings == 1  # meningioma -> pituitary
    assert np.trace(flips.counts) == 3  # the images that held


def test_clear_errors():
    with pytest.raises(ValueError, match="'tumour' is not one of the model's classes"):
        flip_matrix([0], [0], CLASSES, negative="tumour")
    with pytest.raises(ValueError, match="outside 0..3"):
        flip_matrix([0], [4], CLASSES)
    with pytest.raises(ValueError, match="say which class means 'no finding'"):
        flip_matrix([0], [1], CLASSES).missed_findings
