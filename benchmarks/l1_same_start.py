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
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def noises(shape, starts: int, first: int) -> list[np.ndarray]:
    return [np.random.default_rng(first + k).normal(size=shape).astype(np.float32) for k in range(starts)]


def ours(args, scratch: Path) -> np.ndarray:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import egide
    from autoattack_crosscheck import export_layers
    from egide.core.gradients import objective_pass
    from egide.lab import services
    from egide.lab.data import load
    from egide.plugins.attacks import _apgd_l1, apgd

    reg = egide.registry()
    clf = egide.Classifier.load(args.model)
    data = load(services.default_data(reg, args.model) if args.data is None else args.data, split="test",
                limit=args.limit)
    x, y = data.x.astype(np.float32), data.y.astype(np.int64)
    keep = clf.predict(x) == y
    x, y = x[keep], y[keep]
    np.save(scratch / "x.npy", x)
    np.save(scratch / "y.npy", y)
    np.save(scratch / "logits.npy", clf.predict_logits(x[:64]))
    (scratch / "layers.json").write_text(json.dumps(export_layers(clf.model, scratch)))
    (scratch / "input_range.json").write_text(json.dumps(list(clf.input_range)))
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
    from autoattack.autopgd_base import APGDAttack, L1_projection
    from autoattack_crosscheck import Affine, rebuild

    torch.set_num_threads(args.threads)
    layers = json.loads((scratch / "layers.json").read_text())
    lo, hi = json.loads((scratch / "input_range.json").read_text())
    # Both sides attack images in [0, 1]; the map to the model's own pixel range goes in front.
    model = torch.nn.Sequential(Affine(hi - lo, lo), rebuild(layers, scratch, torch)).eval()
    x, y = np.load(scratch / "x.npy"), np.load(scratch / "y.npy")
    xt, yt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))), torch.from_numpy(y)
    keras_logits = np.load(scratch / "logits.npy")
    with torch.no_grad():
        gap = float(np.abs(model(xt[: len(keras_logits)]).numpy() - keras_logits).max())
    if gap > 1e-3:
        raise SystemExit(f"the PyTorch rebuild's logits differ from Keras' by {gap:.2e}: not comparable")
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
