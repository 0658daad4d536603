"""Ray scaling: the same evaluation on 1 and on 2 Ray workers, each held to one core, and locally.

    .venv/bin/python benchmarks/ray_scaling.py [--images 1024] [--steps 10] [--batch-size 64]
                                               [--suite quick] [--defense gaussian-noise]

The evaluation: PGD (`--steps` steps) at eps = 4/255 on `--images` images of the demo's train
split (1,680 images, so 1,024 by default), in batches of `--batch-size`: one Ray task per batch.
Each configuration runs twice in the same Ray session; the second run is timed (the first starts
the worker processes, imports TensorFlow in them, loads the model and traces the attack: costs
paid once per worker, not per evaluation). Workers hold TensorFlow to one thread each; the local
run lets TensorFlow use every core. Every run's per-image results are compared with the local
run's: they must be identical.

`--suite` adds a reference protocol (its stages run one after another, each stage's batches at
once) and `--defense` a preprocessing defense (each attack on it both ways, its batches at once),
to measure those parts of an evaluation too.

Prints images per second for each, and the two ratios of issue 16: 2 workers against 1 (goal
>= 1.7, the work is embarrassingly parallel) and 2 single-core workers against the local run on
both cores (goal >= 1.0).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a cluster of this process's own


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--suite", choices=["quick", "standard"], default=None)
    parser.add_argument("--defense", default=None, help="a preprocessing defense, e.g. gaussian-noise")
    args = parser.parse_args(argv)

    import ray

    import egide
    from egide.lab.evaluation.pipeline import evaluate

    reg = egide.registry()
    clf = egide.Classifier.load("brain-tumor-cnn")
    data = reg.create("dataset", "brain-tumor-phantom").load("train").take(args.images)
    config = {"attacks": [{"plugin": "pgd", "params": {"steps": args.steps}}], "eps": [4 / 255],
              "batch_size": args.batch_size, "gallery": 0, "sanity_checks": False,
              "suite": args.suite, "defenses": [{"plugin": args.defense}] if args.defense else []}
    print(f"Égide Ray scaling: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}, "
          f"{len(data)} images, PGD-{args.steps}, batches of {args.batch_size}"
          + (f", the {args.suite} suite" if args.suite else "")
          + (f", behind {args.defense} (both ways)" if args.defense else ""))

    def timed(extra: dict) -> tuple[float, list]:
        evaluate({**config, **extra}, classifier=clf, dataset=data)  # warm: workers, model, trace
        started = time.perf_counter()
        report = evaluate({**config, **extra}, classifier=clf, dataset=data)
        return time.perf_counter() - started, _per_image(report)

    local_s, local_robust = timed({})
    rows = [("local, TensorFlow on every core", local_s, True)]
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            seconds, robust = timed({"executor": {"ray": ""}})
            if workers == 2:
                returned, freed = _cancel_latency(clf, data, args.batch_size)
        finally:
            ray.shutdown()
        rows.append((f"Ray, {workers} worker(s) of one core", seconds, robust == local_robust))
    n = len(data)
    print(f"{'run':<34} {'seconds':>8} {'images/s':>9}  same per-image results")
    for name, seconds, same in rows:
        print(f"{name:<34} {seconds:>8.2f} {n / seconds:>9.1f}  {'yes' if same else 'NO'}")
    one, two = rows[1][1], rows[2][1]
    print(f"2 workers / 1 worker: {one / two:.2f}x (goal >= 1.7)   "
          f"2 workers / local: {local_s / two:.2f}x (goal >= 1.0)")
    print(f"cancel while 2 tasks run (PGD-100000): the run returns in {returned:.2f} s, "
          f"the cluster's CPUs are free again in {freed:.2f} s")
    return 0 if all(same for _, _, same in rows) else 1


def _cancel_latency(clf, data, batch_size: int) -> tuple[float, float]:
    """Seconds from a cancel (the progress callback raising, as a server job's does) to the run
    returning, and to every CPU of the cluster being free again."""
    import ray

    import egide
    from egide.lab.evaluation.ray_executor import RayExecutor
    from egide.lab.evaluation.running import AttackJob

    class Cancelled(Exception):
        pass

    attack = egide.registry().create("attack", "pgd", eps=4 / 255, steps=100_000)
    job = AttackJob(attack, clf, clf, data.x[:2 * batch_size], data.y[:2 * batch_size], "pgd")
    asked = []

    def progress(done, total, label):
        if not asked and ray.available_resources().get("CPU", 0) == 0:  # both tasks run
            asked.append(time.perf_counter())
        if asked:
            raise Cancelled

    try:
        RayExecutor("").run_all([job], batch_size=batch_size, seed=0, progress=progress)
    except Cancelled:
        returned = time.perf_counter() - asked[0]
    while ray.available_resources().get("CPU", 0) < 2:
        time.sleep(0.01)
    return returned, time.perf_counter() - asked[0]


def _per_image(report) -> list:
    """Every per-image outcome of the report: attacks, suite stages, defense runs' robustness."""
    out = [r.robust.tolist() for r in report.runs]
    if report.suite:
        out += [r.broken_by.tolist() for r in report.suite.runs]
    out += [(r.non_adaptive, r.adaptive) for d in report.defenses for r in d.runs]
    return out


if __name__ == "__main__":
    sys.exit(main())
