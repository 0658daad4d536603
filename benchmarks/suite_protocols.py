"""Two suite protocols side by side on the same model, images, budget and threads: robust
accuracy, each member's time, the points one protocol leaves robust that the other breaks, and
the time ratio. For `fast` against `standard` (issue 25: at least as strong, much faster).

    .venv/bin/python benchmarks/suite_protocols.py [--model brain-tumor-cnn] [--data NAME|PATH]
        [--split test] [--limit N] [--eps 4/255] [--norm inf|2|1] [--protocols standard,fast]
        [--threads 2] [--seed 0]

The original AutoAttack beside Égide's `standard`: benchmarks/autoattack_crosscheck.py.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brain-tumor-cnn")
    parser.add_argument("--data", default=None, help="default: the data set the model declares")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--eps", default="4/255")
    parser.add_argument("--norm", default="inf", choices=["inf", "2", "1"])
    parser.add_argument("--protocols", default="standard,fast")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
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
    from egide.lab.evaluation.running import Counter
    from egide.lab.evaluation.suite import run_suite

    reg = egide.registry()
    clf = egide.Classifier.load(args.model)
    data = load(args.data or services.default_data(reg, args.model), split=args.split, limit=args.limit,
                seed=args.seed)
    x, y = data.x, data.y
    eps = services.parse_number(args.eps)
    clean_ok = clf.predict(x) == y

    class Config:
        batch_size = None
        seed = args.seed

    print(f"{args.model}: {len(x)} images, clean {clean_ok.mean():.1%}, eps {args.eps} (L{args.norm}), "
          f"{args.threads} threads")
    results = {}
    for protocol in args.protocols.split(","):
        started = time.perf_counter()
        report = run_suite(reg, protocol, clf, clf, x, y, clean_ok, [eps], args.norm, Config,
                           Counter(len(x), None))
        seconds = time.perf_counter() - started
        run = report.runs[0]
        results[protocol] = (run.robust, seconds)
        stages = ", ".join(f"{m.ran or '(' + m.label + ')'} {a:.1%} in {s:.0f} s"
                           for m, a, s in zip(report.members, run.after, run.seconds))
        print(f"  {protocol:9s} robust {run.robust_accuracy:.2%} ({run.robust.sum()}/{len(x)}) in {seconds:.0f} s: "
              f"{stages}" + (f"; FLAG {run.masking}" if run.masking else ""))
        for m in report.members:
            if m.note:
                print(f"            note: {m.note}")
    names = list(results)
    for a, b in zip(names, names[1:]):
        (ra, ta), (rb, tb) = results[a], results[b]
        print(f"  robust under {b} but broken by {a}: {int(np.sum(rb & ~ra))}; robust under {a} but broken by "
              f"{b}: {int(np.sum(ra & ~rb))}; {b} is {ta / tb:.2f}x faster than {a}")


if __name__ == "__main__":
    main()
