"""Which robust points a second APGD-T start can still break, by how near the first start brought
them to the boundary: the evidence behind `fast`'s `restart_within` (docs/decisions.md).

    .venv/bin/python benchmarks/second_start.py [--model brain-tumor-cnn] [--data NAME|PATH]
        [--limit 360] [--eps 4/255] [--norm inf|2|1] [--starts 6] [--within 0.1] [--threads 2]

On the points APGD-CE leaves robust, it runs APGD-T with MALT's 3 targets and one start, as
`fast` does; on the points still robust it measures the targeted DLR at the point returned (the
largest over the other classes: 0 at the boundary, negative inside), then runs `--starts` more
APGD-T starts with other seeds and Square with 5,000 queries, and prints the DLR of every point
they broke beside the DLR of those nothing broke, and how many points lie within `--within`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def targeted_dlr(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The targeted DLR towards the strongest other class: -(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)."""
    top = -np.sort(-logits, axis=1)
    own = logits[np.arange(len(y)), y]
    strongest_other = np.where(np.eye(logits.shape[1], dtype=bool)[y], -np.inf, logits).max(axis=1)
    return -(own - strongest_other) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brain-tumor-cnn", help="named model or model file")
    parser.add_argument("--data", default=None, help="default: the data set the model declares")
    parser.add_argument("--limit", type=int, default=360)
    parser.add_argument("--eps", default="4/255")
    parser.add_argument("--norm", default="inf", choices=["inf", "2", "1"])
    parser.add_argument("--starts", type=int, default=6, help="more APGD-T starts, each with its own seed")
    parser.add_argument("--within", type=float, default=0.1, help="the margin to count points within")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import model_and_images, tensorflow_on

    tensorflow_on(args.threads, onednn=True)  # as autoattack_crosscheck.py measures
    from egide.lab import services
    from egide.lab.evaluation.suite import L1_PARAMS

    reg, clf, x, y = model_and_images(args.model, args.data, args.limit)
    eps = services.parse_number(args.eps)
    l1 = args.norm == "1"

    def attack(plugin, label, **params):
        extra = L1_PARAMS.get(label, {}) if l1 else {}
        return reg.create("attack", plugin, eps=eps, norm=args.norm, **{**params, **extra})

    ok = clf.predict(x) == y
    ce = attack("apgd", "apgd-ce", loss="ce", steps=100)
    after_ce = clf.predict(ce.run(clf, x[ok], y[ok], seed=0).x_adv) == y[ok]
    x, y = x[ok][after_ce], y[ok][after_ce]
    apgd_t = attack("apgd", "apgd-t-malt", loss="dlr-targeted", steps=100, restarts=1, target_classes=3,
                    target_order="linear")
    first = apgd_t.run(clf, x, y, seed=0).x_adv
    still = clf.predict(first) == y
    x, y = x[still], y[still]
    dlr = targeted_dlr(clf.predict_logits(first[still]), y)
    by_starts = np.zeros(len(y), bool)
    for k in range(1, args.starts + 1):
        by_starts |= clf.predict(apgd_t.run(clf, x, y, seed=1000 + k).x_adv) != y
    square = attack("square", "square", queries=5000, p_init=0.8, rescale_schedule=False)
    by_square = clf.predict(square.run(clf, x, y, seed=0).x_adv) != y

    def listed(values):
        return ", ".join(f"{v:.3f}" for v in np.sort(values)[::-1]) or "none"

    print(f"{args.model}, L{args.norm} eps {args.eps}: {int(ok.sum())} correct, {int(after_ce.sum())} robust "
          f"after APGD-CE, {len(y)} after one APGD-T start (MALT, 3 targets)")
    print(f"broken by {args.starts} more starts: {int(by_starts.sum())}; their DLR after the first: "
          f"{listed(dlr[by_starts])}")
    print(f"broken by Square (5,000 queries): {int(by_square.sum())}; their DLR: {listed(dlr[by_square])}")
    never = ~by_starts & ~by_square
    print(f"broken by neither: {int(never.sum())}; the nearest: {listed(dlr[never][dlr[never] > -0.3])}")
    print(f"within {args.within} of the boundary (a second start under restart_within={args.within}): "
          f"{int((dlr > -args.within).sum())} of {len(y)}")


if __name__ == "__main__":
    main()
