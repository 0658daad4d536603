"""Égide's l1-APGD beside the reference's from the same random starts: are the steps the same?

    .venv/bin/python benchmarks/l1_same_start.py --reference-python /tmp/aa/bin/python \\
        --autoattack /tmp/auto-attack [--model brain-tumor-cnn] [--limit 120] [--eps 2] [--starts 3]

l1-APGD's result swings from one random start to the next (docs/decisions.md), so two runs with
their own seeds can end several images apart while running the same algorithm. This feeds both
sides the same starting noise (Gaussian, as both draw it, before the projection onto the 3 eps
ball of the 3-2-1 schedule) and runs one APGD-CE pass with the schedule on the correctly
classified images, then prints, per start, the images each side broke, both, and the unions.
Égide's side gets the noise by standing in for the draw of `_apgd_l1` (a benchmark-only seam);
the reference's by `decr_eps_pgd`'s own steps with that start. The rebuild of the network in
PyTorch is `autoattack_crosscheck.py`'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def noises(shape, starts: int, first: int) -> list[np.ndarray]:
    return [np.random.default_rng(first + k).normal(size=shape).astype(np.float32) for k in range(starts)]


def ours(args, scratch: Path) -> np.ndarray:
    from _common import export_for_reference, model_and_images, tensorflow_on

    tf = tensorflow_on(args.threads)
    from egide.core.gradients import objective_pass
    from egide.plugins.attacks import _apgd_l1, apgd

    _, clf, x, y = model_and_images(args.model, args.data, args.limit)
    keep = clf.predict(x) == y
    x, y = x[keep], y[keep]
    export_for_reference(clf, x, y, scratch)
    model_pass = objective_pass(clf, apgd._objective("ce", False))

    def succeeded(logits, labels, goal):
        return tf.not_equal(tf.argmax(logits, axis=1, output_type=labels.dtype), labels)

    broken = []
    for noise in noises(x.shape, args.starts, args.seed):
        class GivenStart:  # the one draw l1_run makes: its start's Gaussian noise
            @staticmethod
            def normal(shape, seed):
                return tf.constant(noise)

        _apgd_l1.randomness = GivenStart
        run = _apgd_l1.l1_run(model_pass, succeeded, args.eps, 100, *clf.clip, True)
        _, hit, _ = tf.function(lambda: run(tf.constant(x), tf.constant(y), tf.constant(y), None))()
        broken.append(hit.numpy())
    return np.array(broken)


def reference(args, scratch: Path) -> None:
    import torch

    sys.path.insert(0, args.autoattack)
    from _common import reference_model
    from autoattack.autopgd_base import APGDAttack, L1_projection

    torch.set_num_threads(args.threads)
    # Both sides attack images in [0, 1]; the map to the model's own pixel range goes in front.
    model, xt, yt = reference_model(scratch, torch)
    x = np.load(scratch / "x.npy")
    broken = []
    for noise in noises(x.shape, args.starts, args.seed):
        attack = APGDAttack(model, n_iter=100, norm="L1", n_restarts=1, eps=args.eps, loss="ce", device="cpu",
                            use_largereps=True)
        attack.init_hyperparam(xt)
        start = xt + torch.from_numpy(np.ascontiguousarray(np.moveaxis(noise, -1, 1)))
        for eps, iterations in zip([3 * args.eps, 2 * args.eps, args.eps], [30, 30, 40]):  # decr_eps_pgd's steps
            attack.n_iter, attack.eps = iterations, eps
            start = start + L1_projection(xt, start - xt, eps)
            start, acc, _, _ = attack.attack_single_run(xt, yt, x_init=start)
        broken.append((acc == 0).numpy())
    np.save(scratch / "reference_broken.npy", np.array(broken))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--autoattack", required=True)
    parser.add_argument("--model", default="brain-tumor-cnn")
    parser.add_argument("--data", default=None)
    parser.add_argument("--limit", type=int, default=120)
    parser.add_argument("--eps", type=float, default=2.0)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0,
                        help="the starts' noise comes from seeds seed, seed + 1, ...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.worker:
        reference(args, Path(args.worker))
        return
    with tempfile.TemporaryDirectory(prefix="egide-l1-start-") as tmp:
        mine = ours(args, Path(tmp))
        subprocess.run([args.reference_python, __file__, "--worker", tmp, *sys.argv[1:]], check=True)
        theirs = np.load(Path(tmp) / "reference_broken.npy")
    print(f"{args.model}, L1 eps {args.eps}, {mine.shape[1]} correctly classified images, one APGD-CE pass "
          "with the 3-2-1 schedule from each start")
    for k, (a, b) in enumerate(zip(mine, theirs)):
        print(f"  start {k}: Égide broke {a.sum()}, the reference {b.sum()}, both {(a & b).sum()}")
    print(f"  union over the starts: Égide {mine.any(0).sum()}, the reference {theirs.any(0).sum()}, "
          f"either {(mine.any(0) | theirs.any(0)).sum()}")


if __name__ == "__main__":
    main()
