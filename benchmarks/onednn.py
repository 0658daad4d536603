"""What TensorFlow's oneDNN kernels buy on this CPU: one forward and one gradient pass of a model
over a batch, timed in two fresh processes, with `TF_ENABLE_ONEDNN_OPTS` off and on.

    .venv/bin/python benchmarks/onednn.py [--model brain-tumor-cnn] [--batch 88] [--threads 2]

oneDNN is opt-in (`TF_ENABLE_ONEDNN_OPTS=1`; docs/decisions.md says why it is not the default);
this prints both, and the ratio, so the gain can be checked on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def measure(model: str, batch: int, threads: int, repeats: int) -> dict:
    """In this process: milliseconds per forward and per gradient pass (median of `repeats`)."""
    import time

    import numpy as np

    import egide
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    clf = egide.Classifier.load(model)
    x = tf.constant(np.random.default_rng(0).random((batch, *clf.input_shape), dtype=np.float32))
    y = tf.zeros([batch], tf.int32)

    @tf.function
    def gradient(x):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, clf.logits(x))
        return tape.gradient(loss, x)

    forward = tf.function(clf.logits)
    out = {}
    for name, f in (("forward", forward), ("gradient", gradient)):
        f(x)  # trace and warm up
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            f(x)
            times.append(time.perf_counter() - started)
        out[name] = 1000 * float(np.median(times))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brain-tumor-cnn")
    parser.add_argument("--batch", type=int, default=88)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.model, args.batch, args.threads, args.repeats)))
        return 0
    results = {}
    for setting in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        done = subprocess.run([sys.executable, __file__, "--worker", "--model", args.model, "--batch", str(args.batch),
                               "--threads", str(args.threads), "--repeats", str(args.repeats)],
                              env=env, capture_output=True, text=True, check=True)
        results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{args.model}, batch {args.batch}, {args.threads} threads: ms per pass (median of {args.repeats})")
    print(f"{'':<10}{'oneDNN off':>12}{'oneDNN on':>12}{'ratio':>8}")
    for name in ("forward", "gradient"):
        off, on = results["0"][name], results["1"][name]
        print(f"{name:<10}{off:>12.1f}{on:>12.1f}{off / on:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
