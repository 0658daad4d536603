"""Attacks on volumes: their cost next to the model's own gradient passes, and memory at 128^3.

    .venv/bin/python benchmarks/volumes.py [--volumes 64] [--steps 20] [--big-volumes 8]

1. The 3-D demo (`brain-tumor-cnn-3d`, 32^3 voxels): PGD with `--steps` steps on `--volumes` test
   volumes, end to end through `attack.run` with the automatic batch size, against the *raw
   cost*: the same number of compiled forward+backward passes (input gradient of the
   cross-entropy, in one tf.while_loop) plus the two prediction passes `run` makes, on the same
   batches. The ratio is what the attack adds to the model's own work.
2. A Conv3D network on 128^3 volumes (random weights: speed and memory do not depend on
   training): the batch size `run` picks from the model's footprint, and the peak resident memory
   of a PGD run over `--big-volumes` volumes with it, in a fresh process, beside this machine's memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


BIG = 128


def raw_cost(clf, x, y, batch_size: int, steps: int) -> float:
    """Seconds for `steps` forward+backward passes and two forward passes per batch, compiled."""
    import tensorflow as tf

    def grad(xb, yb):
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = tf.keras.losses.sparse_categorical_crossentropy(yb, clf.logits(xb), from_logits=True)
        return tape.gradient(loss, xb)

    @tf.function(reduce_retracing=True)
    def passes(xb, yb):
        _, out = tf.while_loop(lambda t, v: t < steps, lambda t, v: (t + 1, v + 1e-6 * grad(v, yb)), (0, xb))
        return tf.argmax(clf.logits(xb), 1), tf.argmax(clf.logits(out), 1)

    batches = [(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    for xb, yb in {tuple(b[0].shape): b for b in batches}.values():
        passes(xb, yb)  # compile every batch shape first
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for xb, yb in batches:
            [t.numpy() for t in passes(xb, yb)]
        best = min(best, time.perf_counter() - started)
    return best


def demo_ratio(volumes: int, steps: int) -> None:
    import egide

    clf = egide.Classifier.load("brain-tumor-cnn-3d")
    test = egide.datasets.load("brain-tumor-phantom-3d", split="test")
    x, y = test.x[:volumes], test.y[:volumes]
    pgd = egide.registry().create("attack", "pgd", eps=2 / 255, steps=steps, early_stop=False)
    batch = clf.batch_size_for(len(x))
    pgd.run(clf, x, y, seed=0)  # compile
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        result = pgd.run(clf, x, y, seed=0)
        best = min(best, time.perf_counter() - started)
    raw = raw_cost(clf, x, y, batch, steps)
    print(f"3-D demo, {clf.input_shape[:3]} voxels, {len(x)} volumes, automatic batch {batch}:")
    print(f"  PGD-{steps} {best:.2f} s (robust accuracy {result.robust_accuracy:.1%}); raw cost "
          f"({steps} gradient + 2 prediction passes) {raw:.2f} s; ratio {best / raw:.2f}x")


def big_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((BIG, BIG, BIG, 1)),
        layers.Conv3D(8, 3, strides=2, padding="same", activation="relu"),
        layers.Conv3D(16, 3, strides=2, padding="same", activation="relu"),
        layers.Conv3D(32, 3, strides=2, padding="same", activation="relu"),
        layers.GlobalAveragePooling3D(),
        layers.Dense(4),
    ], name="conv3d_128")


BIG_CHILD = r'''
import resource, sys, time, numpy as np
sys.path.insert(0, sys.argv[2])
import volumes, egide
clf = egide.Classifier.from_keras(volumes.big_model(), clip=(0.0, 1.0))
n = int(sys.argv[1])
x = np.random.default_rng(0).uniform(0, 1, (n, volumes.BIG, volumes.BIG, volumes.BIG, 1)).astype(np.float32)
y = clf.predict(x, batch_size=2)
started = time.perf_counter()
result = egide.registry().create("attack", "pgd", eps=2 / 255, steps=5, early_stop=False).run(clf, x, y, seed=0)
print(clf.batch_size_for(n), round(time.perf_counter() - started, 1),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, round(x.nbytes / 2**20))
'''


def big_memory(volumes: int) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", BIG_CHILD, str(volumes), here], capture_output=True, text=True,
                         check=True).stdout.split()
    batch, seconds, peak, data = out[-4:]
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    print(f"128^3 Conv3D network, {volumes} volumes ({data} MiB of float32), automatic batch {batch}:")
    print(f"  PGD-5 {seconds} s; peak resident memory {peak} MiB of this machine's {total:,.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--big-volumes", type=int, default=8)
    args = parser.parse_args()
    demo_ratio(args.volumes, args.steps)
    big_memory(args.big_volumes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
