"""What compiling an attack costs: its first run (trace + graph optimisation + the work) against
a second, identical run (the work alone), and how many graphs it traced.

    .venv/bin/python benchmarks/tracing.py [--model brain-tumor-cnn] [--images 12] [--batch 5]
        [--attacks apgd,square,fab] [--norm inf|2|1] [--threads 2]

The images run in batches of --batch, so a part-batch comes last when --batch does not divide
--images: every attack should still trace one graph (core/batch_relaxed.py). Small budgets: the
point is the fixed cost that a suite member pays once per job, whatever the number of images.
"""
from __future__ import annotations

import argparse
import os
import time

PARAMS = {"fgsm": {}, "pgd": {"steps": 10}, "apgd": {"steps": 10}, "square": {"queries": 50},
          "fab": {"steps": 10}, "deepfool": {"steps": 10}, "cw": {"steps": 10, "binary_search_steps": 1}}
NO_NORM = {"fgsm", "deepfool", "cw"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brain-tumor-cnn", help="named model or model file")
    parser.add_argument("--data", default=None, help="default: the data set the model declares")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--attacks", default="pgd,apgd,square,fab")
    parser.add_argument("--norm", default="inf", choices=["inf", "2", "1"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import egide
    from egide.lab import services
    from egide.lab.data import load

    reg = egide.registry()
    clf = egide.Classifier.load(args.model)
    data = load(args.data or services.default_data(reg, args.model), split="test", limit=args.images, seed=0)
    eps = {"inf": 4 / 255, "2": 0.5, "1": 8.0}[args.norm]
    print(f"{args.model}: {len(data.x)} images of {clf.input_shape} in batches of {args.batch}, "
          f"L{args.norm}, {args.threads} threads")
    print(f"{'attack':10s} {'first run':>10s} {'again':>8s} {'compiling':>10s} {'graphs traced':>14s}")
    for name in args.attacks.split(","):
        params = {**PARAMS.get(name, {}), "eps": eps}
        if name not in NO_NORM:
            params["norm"] = args.norm
        if name in ("cw", "deepfool"):
            params.pop("eps")
        attack = reg.create("attack", name, **params)
        started = time.perf_counter()
        attack.run(clf, data.x, data.y, batch_size=args.batch, seed=0)
        first = time.perf_counter() - started
        started = time.perf_counter()
        attack.run(clf, data.x, data.y, batch_size=args.batch, seed=0)
        again = time.perf_counter() - started
        traced = {label: fn.experimental_get_tracing_count()
                  for by_name in attack.__dict__.get("_compiled_by_clf", {}).values()
                  for label, fn in by_name.items()}
        print(f"{name:10s} {first:9.2f}s {again:7.2f}s {first - again:9.2f}s  "
              + ", ".join(f"{label} {count}" for label, count in traced.items()))


if __name__ == "__main__":
    main()
