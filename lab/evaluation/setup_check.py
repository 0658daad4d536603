"""Before any attack: is the model being fed what it expects?

A model that answers one class for (nearly) every scan, or is no better than chance on clean
scans, is not being evaluated: it is being fed the wrong thing (pixels in another range, channels
in another order, class folders in another order than its outputs). Every robust accuracy after
that would be noise, and a report would still look fine. So the evaluation stops here with the
likely causes, unless the user says to go on; then the report carries the finding as a flagged
sanity check.
"""

from __future__ import annotations

import numpy as np

from egide.lab.report.model import SanityCheck

MIN_IMAGES = 20  # fewer clean predictions say too little to stop anything
ONE_CLASS_SHARE = 0.95  # this share of the images in one predicted class ...
CHANCE_MARGIN = 0.05  # ... or an accuracy within this of the chance level


def setup_problem(clf, pred: np.ndarray, y: np.ndarray, names: list[str]) -> str | None:
    """What looks broken, with the likely causes; None when the clean predictions look sane."""
    n, k = len(y), clf.num_classes
    present = np.bincount(y, minlength=k)
    if n < MIN_IMAGES or np.count_nonzero(present) < 2:
        return None
    counts = np.bincount(pred, minlength=k)
    accuracy = float(np.mean(pred == y))
    chance = max(1.0 / k, float(present.max()) / n)  # guessing, or always the commonest class
    if counts.max() >= ONE_CLASS_SHARE * n:
        seen = (f"the model predicts '{names[int(counts.argmax())]}' for {counts.max()} of the {n} "
                f"clean images (clean accuracy {accuracy:.1%})")
    elif accuracy <= chance + CHANCE_MARGIN:
        seen = f"clean accuracy is {accuracy:.1%}, at the chance level ({chance:.1%}) for these {n} images"
    else:
        return None
    lo, hi = clf.input_range
    causes = [f"the input range: the model is fed pixels in {lo:g}..{hi:g} ({clf.range_source}); if it "
              "expects another range, declare it (--input-range 0,255, input_range in the config or API)"]
    if clf.input_shape[-1] == 3:
        causes.append("the channel order: images are read as RGB; a model trained on BGR (OpenCV) "
                      "images needs them converted")
    swapped = _class_swap(pred, y, names)
    causes.append("the class order: the class folders are read in name order (" + ", ".join(
        f"{name} → output {i}" for i, name in enumerate(names)) + ")" + (f"; {swapped}" if swapped else "")
        + "; give class_names in the model's output order")
    return (f"{seen}. The set-up looks broken, so no attack was run. Likely causes:\n"
            + "\n".join(f"  - {c}" for c in causes)
            + "\nTo evaluate anyway, pass --allow-broken-setup (config: \"stop_on_broken_setup\": false); "
            "the report then carries this finding.")


def overridden(problem: str) -> SanityCheck:
    return SanityCheck("clean-predictions-look-sane", False,
                       problem.split(" The set-up looks broken")[0]
                       + ". The evaluation went on because the check was overridden: every number "
                       "below may reflect a broken set-up, not the model's robustness.")


def _class_swap(pred, y, names) -> str | None:
    """'most glioma images are predicted as meningioma' when a class goes mostly to another."""
    for c in np.unique(y):
        got = np.bincount(pred[y == c], minlength=len(names))
        top = int(got.argmax())
        if top != c and got[top] > 0.5 * got.sum():
            return f"most '{names[c]}' images are predicted as '{names[top]}'"
    return None
