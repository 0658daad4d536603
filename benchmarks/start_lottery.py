"""How often one APGD-T start breaks each point, at Égide and at the reference, over many seeds.

    .venv/bin/python benchmarks/start_lottery.py --reference-python /tmp/aa/bin/python \\
        --autoattack /tmp/auto-attack [--model brain-tumor-cnn] [--limit 180] [--eps 0.5] \\
        [--norm 2] [--seeds 80] [--show 46,126]

A point near a class boundary falls to some random starts and not others, on both sides. One
cross-check run draws one start per target on each side, so such a point can decide which side
"wins" a row. This measures the odds instead: on the points Égide's APGD-CE (seed 0) leaves
robust, as the suite hands them on, it runs one APGD-T start (3 targets, dlr-targeted, 100
steps) with each of `--seeds` seeds on each side, and prints per point how many seeds broke it
(the points in `--show` first), and the mean broken per start.

The targets: Égide's are MALT's 3 nearest (`fast`'s member), the reference's its 3 top-ranked
classes; on a model of 4 classes both are all three other classes. The rebuild of the network in
PyTorch is `autoattack_crosscheck.py`'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TARGETS = 3


def ours(args, scratch: Path) -> tuple[np.ndarray, np.ndarray]:
    from _common import export_for_reference, model_and_images, tensorflow_on

    tensorflow_on(args.threads, onednn=True)  # as autoattack_crosscheck.py measures
    from egide.lab.evaluation.suite import L1_PARAMS

    reg, clf, x, y = model_and_images(args.model, args.data, args.limit)

    def attack(label, **params):
        extra = L1_PARAMS.get(label, {}) if args.norm == "1" else {}
        return reg.create("attack", "apgd", eps=args.eps, norm=args.norm, steps=100, **{**params, **extra})

    correct = np.flatnonzero(clf.predict(x) == y)
    ce = attack("apgd-ce", loss="ce", restarts=1).run(clf, x[correct], y[correct], seed=0).x_adv
    points = correct[clf.predict(ce) == y[correct]]
    export_for_reference(clf, x[points], y[points], scratch)
    apgd_t = attack("apgd-t-malt", loss="dlr-targeted", restarts=1, target_classes=TARGETS,
                    target_order="linear")
    broken = [clf.predict(apgd_t.run(clf, x[points], y[points], seed=s).x_adv) != y[points]
              for s in range(args.seeds)]
    return points, np.array(broken)


def reference(args, scratch: Path) -> None:
    import torch

    sys.path.insert(0, args.autoattack)
    from _common import reference_model
    from autoattack.autopgd_base import APGDAttack_targeted
    from autoattack_crosscheck import REFERENCE_NORMS

    torch.set_num_threads(args.threads)
    model, xt, yt = reference_model(scratch, torch)
    broken = []
    for seed in range(args.seeds):
        attack = APGDAttack_targeted(model, n_iter=100, norm=REFERENCE_NORMS[args.norm], n_restarts=1,
                                     eps=args.eps, seed=seed, device="cpu", n_target_classes=TARGETS,
                                     use_largereps=args.norm == "1")
        with torch.no_grad():
            broken.append((model(attack.perturb(xt, yt)).argmax(1) != yt).numpy())
    np.save(scratch / "reference_broken.npy", np.array(broken))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--autoattack", required=True)
    parser.add_argument("--model", default="brain-tumor-cnn")
    parser.add_argument("--data", default=None)
    parser.add_argument("--limit", type=int, default=180)
    parser.add_argument("--eps", type=float, default=0.5)
    parser.add_argument("--norm", default="2", choices=["inf", "2", "1"])
    parser.add_argument("--seeds", type=int, default=80)
    parser.add_argument("--show", default="", help="indices (in the limited set) to print first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.worker:
        reference(args, Path(args.worker))
        return
    with tempfile.TemporaryDirectory(prefix="egide-lottery-") as tmp:
        points, mine = ours(args, Path(tmp))
        subprocess.run([args.reference_python, __file__, *sys.argv[1:], "--worker", tmp], check=True)
        theirs = np.load(Path(tmp) / "reference_broken.npy")
    shown = [int(i) for i in args.show.split(",") if i]
    missing = [i for i in shown if i not in points]
    if missing:
        print(f"not robust after APGD-CE, so not attacked: {missing}")
    order = [int(np.flatnonzero(points == i)[0]) for i in shown if i in points]
    order += [k for k in range(len(points)) if k not in order and 0 < mine[:, k].sum() + theirs[:, k].sum()]
    print(f"{args.model}, L{args.norm} eps {args.eps}: {len(points)} points robust after APGD-CE; one APGD-T "
          f"start ({TARGETS} targets) per seed, {args.seeds} seeds each side")
    print(f"{'point':>6}{'Égide':>8}{'reference':>11}")
    for k in order:
        print(f"{points[k]:>6}{int(mine[:, k].sum()):>8}{int(theirs[:, k].sum()):>11}")
    print(f"broken per start: Égide {mine.sum(1).mean():.2f}, the reference {theirs.sum(1).mean():.2f} "
          f"(of {len(points)}); points broken by no seed on either side: "
          f"{int(np.sum((mine.sum(0) + theirs.sum(0)) == 0))}")


if __name__ == "__main__":
    main()
