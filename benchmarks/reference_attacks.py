"""What the reference attacks cost next to the model's own passes.

    .venv/bin/python benchmarks/reference_attacks.py [--images 256] [--steps 100] [--queries 1000]

On the demo architecture (64x64x1 brain-MRI CNN, trained weights) and a random image set labelled
by the model itself (every image correctly classified, so no attack skips any):
  - APGD with N iterations against N compiled forward+backward passes (the issue's target 1.1x),
  - Square with Q queries against Q compiled forward passes (target 1.1x), at an eps so small
    that no image breaks (each keeps paying for every query);
  - the same two at L1 (l1-APGD with AutoAttack's 3-2-1 eps schedule, Square-L1), where each
    step also finds a sparse direction and projects onto the L1 ball inside the box: no target,
    the ratio says what that geometry costs.
Each side is compiled and warmed up first; the median of a few repeats is printed.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from egide.lab.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import egide  # noqa: E402
from attacks import median_time  # noqa: E402  (benchmarks/attacks.py: median of repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    reg = egide.registry()
    clf = egide.Classifier.load("brain-tumor-cnn")
    rng = np.random.default_rng(0)
    x = rng.random((args.images, *clf.input_shape), dtype=np.float32)
    y = clf.predict(x)
    xt, yt = tf.constant(x), tf.constant(y)

    @tf.function(reduce_retracing=True)
    def gradient_loop(xb, yb, steps):
        def body(i, acc):
            with tf.GradientTape() as tape:
                tape.watch(xb)
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=clf.logits(xb))
            return i + 1, acc + tf.reduce_sum(tape.gradient(loss, xb))
        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    @tf.function(reduce_retracing=True)
    def forward_loop(xb, steps):
        def body(i, acc):
            return i + 1, acc + tf.reduce_sum(clf.logits(xb + tf.cast(i, tf.float32) * 1e-9))
        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    rows = []
    apgd = reg.create("attack", "apgd", eps=8 / 255, steps=args.steps)
    apgd.run(clf, x[:8], y[:8])  # compile
    apgd.run(clf, x, y)
    gradient_loop(xt, yt, tf.constant(2)).numpy()
    base = median_time(lambda: gradient_loop(xt, yt, tf.constant(args.steps)).numpy(), args.repeats)
    spent = median_time(lambda: apgd.run(clf, x, y), args.repeats)
    rows.append((f"apgd N={args.steps}", spent, base, f"{args.steps} fwd+bwd", 1.1))

    square = reg.create("attack", "square", eps=1e-4, queries=args.queries)
    square.run(clf, x, y)
    forward_loop(xt, tf.constant(2)).numpy()
    base = median_time(lambda: forward_loop(xt, tf.constant(args.queries)).numpy(), args.repeats)
    result = {}
    spent = median_time(lambda: result.update(r=square.run(clf, x, y)), args.repeats)
    rows.append((f"square Q={args.queries}", spent, base, f"{args.queries} forward", 1.1))
    unbroken = float(np.mean(~result["r"].success))

    apgd_l1 = reg.create("attack", "apgd", eps=1e-3, norm="1", eps_schedule=True, steps=args.steps)
    apgd_l1.run(clf, x, y)
    base = median_time(lambda: gradient_loop(xt, yt, tf.constant(args.steps)).numpy(), args.repeats)
    spent = median_time(lambda: apgd_l1.run(clf, x, y), args.repeats)
    rows.append((f"apgd-L1 N={args.steps}", spent, base, f"{args.steps} fwd+bwd", None))
    square_l1 = reg.create("attack", "square", eps=1e-3, norm="1", queries=args.queries)
    square_l1.run(clf, x, y)
    base = median_time(lambda: forward_loop(xt, tf.constant(args.queries)).numpy(), args.repeats)
    spent = median_time(lambda: square_l1.run(clf, x, y), args.repeats)
    rows.append((f"square-L1 Q={args.queries}", spent, base, f"{args.queries} forward", None))

    print(f"{args.images} images 64x64x1, demo CNN, batch chosen by the attack "
          f"({clf.batch_size_for(args.images)}); Square left {unbroken:.0%} of the images unbroken")
    print(f"{'attack':<20}{'seconds':>9}{'raw s':>9}  {'raw cost':<16}{'ratio':>7}  target")
    for name, spent, base, what, target in rows:
        ratio = spent / base
        verdict = "—" if target is None else f"<= {target}  {'PASS' if ratio <= target else 'MISS'}"
        print(f"{name:<20}{spent:>9.2f}{base:>9.2f}  {what:<16}{ratio:>7.2f}  {verdict}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
