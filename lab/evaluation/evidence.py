"""What a robustness card needs from an evaluation beyond its accuracies: fingerprints of what was
tested, per image the class each budget's worst case drove it to, and the class that means
"no finding".

The worst case of an image at a budget is the first attack that broke it, in the order the report
lists them: the suite's members first (the headline), then the evaluation's attacks in the
config's order. An image the model got wrong before any attack keeps its clean prediction; one
that no attack broke keeps its label.
"""

from __future__ import annotations

import math

import numpy as np

from egide.core.errors import InputError
from egide.lab.report.identity import file_sha256, images_sha256, labels_sha256
from egide.lab.report.model import eps_key


def fingerprints(model_file: str | None, x: np.ndarray, y: np.ndarray) -> dict:
    """SHA-256 of the model file (None for a model given in memory), of the images and the labels."""
    return {"model_sha256": file_sha256(model_file) if model_file else None,
            "images_sha256": images_sha256(x), "labels_sha256": labels_sha256(y)}


def worst_case_predictions(runs, suite, eps_list, norm: str, clean_pred, y) -> dict[str, list[int]]:
    """Per budget (its eps key): each image's class under its worst-case attack."""
    y, clean_pred = np.asarray(y), np.asarray(clean_pred)
    out = {}
    for eps in eps_list:
        attacked = []  # (broke it, class it went to), in report order
        if suite is not None and suite.at(eps) is not None:
            at = suite.at(eps)
            attacked.append((at.broken_by != "", at.adv_pred))
        attacked += [(r.adv_pred != y, r.adv_pred) for r in runs
                     if r.eps is not None and math.isclose(r.eps, eps) and r.norm == norm]
        if not attacked:
            continue
        pred = y.copy()
        settled = clean_pred != y
        pred[settled] = clean_pred[settled]
        for broke, went_to in attacked:
            now = broke & ~settled
            pred[now] = went_to[now]
            settled |= now
        out[eps_key(eps)] = [int(v) for v in pred]
    return out


def negative_class(declared: str | None, dataset_declares: str | None, names: list[str]) -> dict:
    """The "no finding" class and where it came from: the config, the data set's declaration, a
    binary model's class 0; else none (the card then counts flips without clinical roles)."""
    if declared is not None:
        if declared not in names:
            raise InputError(f"negative_class '{declared}' is not one of the classes {names}: give the "
                             "class that means 'no finding' exactly as the data names it")
        return {"name": declared, "source": "declared"}
    if dataset_declares in names:
        return {"name": dataset_declares, "source": "declared by the data set"}
    if len(names) == 2:
        return {"name": names[0], "source": "a binary model's class 0 (declare negative_class to change it)"}
    return {"name": None, "source": "not declared"}
