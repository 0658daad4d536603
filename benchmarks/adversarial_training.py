"""Adversarial-training cost benchmark: an epoch with k inner PGD steps vs a clean epoch.

    .venv/bin/python benchmarks/adversarial_training.py [--steps 3,7] [--rounds 3] [--quick]

On the demo model (brain-tumor-cnn architecture, 64x64x1, weights fixed by seed: speed does
not depend on training) and the brain-tumor-phantom train split, it times one epoch of

  clean  - the `adversarial-training` trainer with adv_ratio=0: the same loop and compiled
           step, no inner attack (one forward+backward+update per batch), and Keras' own
           `model.fit`; the faster of the two is the clean reference;
  AT-k   - the same trainer with k PGD steps per batch,

and prints AT_epoch / ((k + 1) x clean_epoch) against the target <= 1.25: a batch of AT-k does
k input-gradient passes plus the clean step, so it should cost about k + 1 clean steps. Same
batch size everywhere.

Timing: each configuration trains 2 epochs through the trainer's public `apply` (or `fit`); the
first compiles and is not counted, the second is timed between the progress calls that end the
first epoch's validation and the second epoch's last batch (validation runs on one image with
one PGD step, next to nothing). The configurations take turns within each round, a ratio is
computed per round and the median over rounds is printed, so a change in machine load hits both
sides of a ratio alike. Wall time is judged; the ratio in CPU time of all threads (`cpu`) is
printed too, steadier when other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET = 1.25


def demo_model():
    import keras

    from egide.plugins.models.brain_tumor_cnn import build

    keras.utils.set_random_seed(0)
    return build((64, 64, 1), 4)


def trainer_epoch(trainer, clf, train, val) -> tuple[float, float]:
    """(wall s, CPU s) of the second epoch of a 2-epoch run, from the trainer's progress calls."""
    per_epoch = -(-len(train) // trainer.params.batch_size)
    marks = {}

    def progress(done, total, label):
        if "val" in label and done == per_epoch:  # epoch 1 validated: epoch 2 starts now
            marks["start"] = (time.perf_counter(), time.process_time())
        elif done == 2 * per_epoch and "val" not in label:  # the last batch of epoch 2
            marks["end"] = (time.perf_counter(), time.process_time())

    trainer.apply(clf, train=train, val=val, progress=progress, seed=0)
    return tuple(e - s for s, e in zip(marks["start"], marks["end"]))


def fit_epoch(train, batch_size: int) -> tuple[float, float]:
    """(wall s, CPU s) of the second epoch of keras' model.fit on the same data and batch size."""
    import keras

    model = demo_model()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    marks = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append((time.perf_counter(), time.process_time()))

        def on_epoch_end(self, epoch, logs=None):
            marks.append((time.perf_counter(), time.process_time()))

    model.fit(train.x, train.y, batch_size=batch_size, epochs=2, shuffle=True, verbose=0,
              callbacks=[Clock()])
    return tuple(e - s for s, e in zip(marks[2], marks[3]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="3,7", help="comma-separated inner PGD steps k (default 3,7)")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per configuration (default 3)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    parser.add_argument("--quick", action="store_true", help="k=3 only, 2 rounds, 512 images")
    args = parser.parse_args(argv)
    ks = [3] if args.quick else [int(k) for k in args.steps.split(",")]
    rounds = 2 if args.quick else args.rounds

    import egide

    train = egide.datasets.load("brain-tumor-phantom", split="train")
    if args.quick:
        train = train.take(512)
    val = train.take(1)
    clf = egide.Classifier.from_keras(demo_model())
    reg = egide.registry()

    def trainer(**params):
        return reg.create("defense", "adversarial-training", epochs=2, batch_size=args.batch_size,
                          val_steps=1, **params)

    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    print(f"adversarial-training epoch cost on {len(train)} images 64x64x1, batch {args.batch_size}, "
          f"{rounds} rounds; {cores} cores, load average {load:.1f}")
    if load > cores:
        print(f"warning: the load average ({load:.1f}) exceeds the cores ({cores}): "
              "other processes are competing, the numbers will be noisy", file=sys.stderr)

    seen = {"loop": [], "fit": [], **{k: [] for k in ks}}
    ratios = {k: [] for k in ks}  # per round: (wall ratio, cpu ratio)
    for _ in range(rounds):
        seen["loop"].append(trainer_epoch(trainer(adv_ratio=0.0), clf, train, val))
        seen["fit"].append(fit_epoch(train, args.batch_size))
        clean = min(seen["loop"][-1], seen["fit"][-1])  # the faster clean epoch (by wall time)
        for k in ks:
            at = trainer_epoch(trainer(steps=k), clf, train, val)
            seen[k].append(at)
            ratios[k].append(tuple(a / ((k + 1) * c) for a, c in zip(at, clean)))

    def median(key, i=0):
        return statistics.median(t[i] for t in seen[key])

    print(f"  clean epoch (median): trainer loop {median('loop'):.2f} s, keras fit "
          f"{median('fit'):.2f} s; the faster of the two in each round is the reference")
    rows = [("k", "AT epoch s", "ratio", "cpu", "target", "")]
    worst = 0.0
    for k in ks:
        wall = statistics.median(r[0] for r in ratios[k])
        cpu = statistics.median(r[1] for r in ratios[k])
        worst = max(worst, wall)
        rows.append((str(k), f"{median(k):.2f}", f"{wall:.2f}", f"{cpu:.2f}", f"<= {TARGET}",
                     "PASS" if wall <= TARGET else "MISS"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print("  ratio = AT_epoch / ((k + 1) x clean_epoch), median over rounds (cpu: in CPU time)")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
