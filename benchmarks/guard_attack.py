"""The detector-aware attack's cost, against the plain attack and against its raw cost.

    .venv/bin/python benchmarks/guard_attack.py [--detectors a,b] [--images 64] [--steps 50] [--repeats 3]

For each detector (fitted on the demo's val split; supervised ones also on PGD examples), on
`--images` test images of the demo at eps = 4/255, the median of `--repeats` runs of:

- plain: PGD with `--steps` steps on the classifier alone (no random restart), the attack an
  evaluation runs;
- adaptive: the detector-aware attack (`egide.lab.guard.attack.GuardAttack`) with the same steps;
- raw: `--steps` times one compiled call that computes what each adaptive step needs and
  nothing else: the class margin's and the detector score's gradients at the same images.

Prints adaptive / plain (issue 14's goal: at most 1.5) and adaptive / raw (what the attack adds
to the gradients it must compute). Both are run with early stopping off, so every step is paid.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from attacks import median_time  # noqa: E402  (benchmarks/attacks.py: median of repeats)

EPS = 4 / 255
GOAL = 1.5


def raw_step(clf, score, threshold):
    """One compiled call: both gradients the adaptive attack takes at each step."""
    import tensorflow as tf

    @tf.function
    def both(x, y):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            logits = tf.cast(clf.logits(x), tf.float32)
            m = tf.reduce_sum(logits * tf.one_hot(y, clf.num_classes))
            d = tf.reduce_sum(tf.cast(score(x), tf.float32) - threshold)
        return tape.gradient(m, x), tape.gradient(d, x)

    return both


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", default="feature-squeezing,kernel-density,learned,lid,magnet,mahalanobis")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    import egide
    from egide.lab.guard.attack import GuardAttack

    tf.get_logger().setLevel("ERROR")
    reg = egide.registry()
    clf = egide.Classifier.load("brain-tumor-cnn")
    data = reg.create("dataset", "brain-tumor-phantom")
    val, test = data.load("val"), data.load("test")
    x, y = test.x[:args.images], test.y[:args.images]
    fit_x, fit_y = val.x[:512], val.y[:512]
    print(f"Égide guard-attack benchmark: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}, "
          f"{len(x)} images, {args.steps} steps, eps 4/255, median of {args.repeats}")
    plain = reg.create("attack", "pgd", eps=EPS, steps=args.steps, random_start=True, early_stop=False)
    plain.run(clf, x, y, batch_size=len(x))  # compile
    plain_s = median_time(lambda: plain.run(clf, x, y, batch_size=len(x)), args.repeats)
    rows = []
    for name in args.detectors.split(","):
        det = reg.create("detector", name)
        fit_adv = plain.run(clf, fit_x, fit_y).x_adv if det.supervised else None
        det.fit(clf, fit_x, fit_adv)
        # Every step paid: an unreachable threshold, so no image ever succeeds and stops early.
        score = det.differentiable_score(clf)
        both = raw_step(clf, score, float(det.threshold))
        xt, yt = tf.constant(x), tf.constant(y)
        both(xt, yt)
        raw_s = median_time(lambda: [both(xt, yt) for _ in range(args.steps)], args.repeats)
        attack = GuardAttack(eps=EPS, steps=args.steps)
        saved = det.threshold
        det.threshold = -np.inf  # every image stays flagged: all steps run
        try:
            attack.run(clf, det, x, y, batch_size=len(x))
            adaptive_s = median_time(lambda: attack.run(clf, det, x, y, batch_size=len(x)), args.repeats)
        finally:
            det.threshold = saved
        rows.append((name, adaptive_s, adaptive_s / plain_s, adaptive_s / raw_s))
    print(f"plain PGD-{args.steps}: {plain_s:.2f} s")
    print(f"{'detector':<20} {'adaptive':>9} {'/ plain':>8} {'/ raw':>7}  goal (/ plain <= {GOAL})")
    for name, seconds, vs_plain, vs_raw in rows:
        verdict = "PASS" if vs_plain <= GOAL else "MISS"
        print(f"{name:<20} {seconds:>8.2f}s {vs_plain:>7.2f}x {vs_raw:>6.2f}x  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
