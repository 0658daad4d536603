"""Transfer table of the supervised detectors: fitted on one attack, measured on every attack.

    .venv/bin/python benchmarks/detector_transfer.py [--detectors lid,learned,magnet]
        [--attacks fgsm,pgd,bim,mim,cw] [--mixes pgd+cw] [--cache DIR] [--json out.json]

Demo model `brain-tumor-cnn`, data `brain-tumor-phantom`; attacks at eps 4/255 (C&W with its
defaults, no eps). A supervised detector is fitted on the train split's clean images and their
adversarial examples from one attack, then scored on the test split: ROC AUC of the clean test
images (negatives) against the test adversarial examples that fooled the model (positives), for
every attack. A row far below its diagonal entry means the detector learned that attack, not
adversarial examples. `--mixes pgd+cw` adds rows fitted on several attacks' examples at once
(one threshold for all). Unsupervised detectors have one row (fitted on clean images only).

Adversarial examples take minutes (C&W: the most); --cache DIR keeps them as
DIR/{split}_{attack}.npz between runs. The detectors' own fit time and scoring rate are printed
too; benchmarks/detectors.py is the speed benchmark proper.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

EPS = 4 / 255


def adversarial(egide, clf, split, attack, cache):
    """(x_adv, fooled) for a whole split, from the cache when it holds them."""
    path = Path(cache) / f"{split}_{attack}.npz" if cache else None
    if path and path.is_file():
        with np.load(path) as data:
            return data["x"], data["success"]
    ds = egide.datasets.load("brain-tumor-phantom", split=split)
    reg = egide.registry()
    atk = reg.create("attack", attack) if attack == "cw" else reg.create("attack", attack, eps=EPS)
    res = atk.run(clf, ds.x, ds.y, seed=0)
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, x=res.x_adv, success=res.success)
    return res.x_adv, res.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="lid,learned,magnet")
    parser.add_argument("--attacks", default="fgsm,pgd,bim,mim,cw")
    parser.add_argument("--mixes", default="pgd+cw",
                        help="comma-separated a+b: also fit on these attacks' examples together")
    parser.add_argument("--cache", help="folder keeping the adversarial examples between runs")
    parser.add_argument("--json", help="write the table to this file")
    args = parser.parse_args()

    import egide
    from sklearn.metrics import roc_auc_score

    clf = egide.Classifier.load("brain-tumor-cnn")
    reg = egide.registry()
    attacks = args.attacks.split(",")
    train = egide.datasets.load("brain-tumor-phantom", split="train").x
    test = egide.datasets.load("brain-tumor-phantom", split="test").x
    positives = {}
    for a in attacks:
        x_adv, fooled = adversarial(egide, clf, "test", a, args.cache)
        positives[a] = x_adv[fooled]

    rows = []
    print(f"{'detector':10} {'fitted on':9} {'fit s':>6} {'img/s':>6}  "
          + " ".join(f"{a:>6}" for a in attacks))
    for name in args.detectors.split(","):
        supervised = reg.get("detector", name).supervised
        mixes = [m for m in args.mixes.split(",") if m]
        for fit_on in (attacks + mixes if supervised else ["clean"]):
            det = reg.create("detector", name)
            x_adv = np.concatenate([adversarial(egide, clf, "train", a, args.cache)[0]
                                    for a in fit_on.split("+")]) if supervised else None
            started = time.perf_counter()
            det.fit(clf, train, x_adv)
            fit_s = time.perf_counter() - started
            clean = det.score(clf, test)  # also the warm-up of the timed call below
            started = time.perf_counter()
            det.score(clf, test)
            rate = len(test) / (time.perf_counter() - started)
            aucs = {}
            for a in attacks:
                scores = det.score(clf, positives[a])
                labels = np.r_[np.zeros(len(clean)), np.ones(len(scores))]
                aucs[a] = float(roc_auc_score(labels, np.r_[clean, scores]))
            rows.append({"detector": name, "fitted_on": fit_on, "fit_seconds": fit_s,
                         "images_per_second": rate, "auc": aucs})
            print(f"{name:10} {fit_on:9} {fit_s:6.1f} {rate:6.0f}  "
                  + " ".join(f"{aucs[a]:6.3f}" for a in attacks), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
