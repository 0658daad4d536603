"""Égide's suites beside the original AutoAttack (PyTorch), on the same weights, images and norm.

    .venv/bin/python benchmarks/autoattack_crosscheck.py \\
        --reference-python /path/to/venv-with-torch/bin/python --autoattack /path/to/auto-attack \\
        [--model brain-tumor-cnn] [--data NAME|PATH] [--split test] [--limit N] [--eps 4/255] \\
        [--norm inf|2|1] [--suite standard,fast] [--repeat 1] [--save results.json]

The reference is not a dependency of Égide: bring a checkout of fra31/auto-attack and a Python
with torch and numpy. This script
  1. loads the Keras model and the images here, runs each of Égide's suites and times it;
  2. writes the model's layers (weights as arrays) and the images to a scratch folder;
  3. runs itself in the reference Python (`--reference-worker`), which rebuilds the same network
     in PyTorch (with the map from [0, 1] to the model's own pixel range in front, as Égide feeds
     it), checks that its logits match Keras' (it stops if they differ by more than 1e-3), and runs
     AutoAttack's "standard" version in the same norm, with its target counts capped at
     classes - 1 (the reference indexes past the classes otherwise);
  4. prints the robust accuracies, the points only one side broke, the time ratios, and the points
     each suite leaves robust that another breaks.

Both sides get the same number of CPU threads. `--repeat N` runs each side N times and keeps its
fastest time: on a shared machine one run's time can be a load burst's. Each of Égide's repeats
creates and compiles its attacks anew, as a new job does; what a process keeps between jobs
(TensorFlow's kernels for the shapes it has seen, the classifier's own logits graph) it keeps, as
PyTorch keeps its own between the reference's repeats. The networks the rebuild understands: Keras
Sequential/functional chains of Conv2D/Conv3D (stride 1 'same', or 'valid'), Max/AveragePooling
2D/3D ('valid'), Flatten, Dense, Dropout, BatchNormalization, Rescaling, ReLU/Activation,
Softmax and GlobalAverage/GlobalMaxPooling 2D/3D; anything else is refused by name. A softmax
output is dropped on the PyTorch side: both sides attack the logits.

On a model of volumes (N, D, H, W, C) the reference runs its standard version without Square,
whose implementation is 2-D only (it reads (C, H, W) from the input's shape): APGD-CE, APGD-T and
FAB-T, with the standard version's settings. Égide's suite runs its Square on cubes as well; its
robust accuracy after the first three members is the like-for-like number (printed per member).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ---- the Égide side -------------------------------------------------------------------------
def run_egide(args, scratch: Path) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Session 9's numbers were measured with TensorFlow's oneDNN kernels on (docs/decisions.md:
    # opt-in, not Égide's default); TF_ENABLE_ONEDNN_OPTS=0 measures TensorFlow's default here.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import egide
    from egide.lab import services
    from egide.lab.data import load
    from egide.lab.evaluation.running import Counter
    from egide.lab.evaluation.suite import run_suite

    reg = egide.registry()
    clf = egide.Classifier.load(args.model)
    data_name = args.data or services.default_data(reg, args.model)
    data = load(data_name, split=args.split, limit=args.limit)
    x, y = data.x.astype(np.float32), data.y.astype(np.int64)
    eps = services.parse_number(args.eps)

    np.save(scratch / "x.npy", x)
    np.save(scratch / "y.npy", y)
    logits = clf.predict_logits(x[:64])
    np.save(scratch / "logits.npy", logits)
    (scratch / "layers.json").write_text(json.dumps(export_layers(clf.model, scratch)))

    clean_ok = clf.predict(x) == y

    class Config:
        batch_size = None
        seed = args.seed

    out = {"clean": clean_ok, "eps": eps, "input_range": list(clf.input_range), "suites": {}}
    for protocol in args.suite.split(","):
        for _ in range(args.repeat):  # each repeat creates its attacks anew: it compiles as a new job does
            started = time.perf_counter()
            report = run_suite(reg, protocol, clf, clf, x, y, clean_ok, [eps], args.norm, Config,
                               Counter(len(x), None))
            seconds = time.perf_counter() - started
            run = report.runs[0]
            if protocol not in out["suites"] or seconds < out["suites"][protocol]["seconds"]:
                out["suites"][protocol] = {
                    "robust": run.robust, "seconds": seconds,
                    "stages": {m.label: (m.ran, after, sec)
                               for m, after, sec in zip(report.members, run.after, run.seconds)}}
    return out


def export_layers(model, scratch: Path) -> list[dict]:
    """The model as a list of layer records; weights go to scratch/w<i>_<name>.npy."""
    records = []

    def save(i, name, value):
        path = scratch / f"w{i}_{name}.npy"
        np.save(path, np.asarray(value, dtype=np.float32))
        return path.name

    for i, layer in enumerate(model.layers):
        kind, cfg = type(layer).__name__, layer.get_config()
        rec = {"kind": kind}
        if kind == "InputLayer" or kind == "Dropout":
            continue
        if kind in ("Conv2D", "Conv3D"):
            if cfg["padding"] == "same" and set(cfg["strides"]) != {1}:
                raise SystemExit(f"layer {layer.name}: 'same' padding with strides is not rebuilt")
            kernel, *bias = layer.get_weights()
            rec.update(kernel=save(i, "kernel", kernel), bias=save(i, "bias", bias[0]) if bias else None,
                       strides=list(cfg["strides"]), padding=cfg["padding"],
                       dilation=list(cfg["dilation_rate"]), activation=cfg["activation"])
        elif kind == "Dense":
            kernel, *bias = layer.get_weights()
            rec.update(kernel=save(i, "kernel", kernel), bias=save(i, "bias", bias[0]) if bias else None,
                       activation=cfg["activation"])
        elif kind in ("MaxPooling2D", "AveragePooling2D", "MaxPooling3D", "AveragePooling3D"):
            if cfg["padding"] != "valid":
                raise SystemExit(f"layer {layer.name}: only 'valid' pooling is rebuilt")
            rec.update(pool=list(cfg["pool_size"]), strides=list(cfg["strides"] or cfg["pool_size"]))
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
            rec.update(gamma=save(i, "gamma", gamma), beta=save(i, "beta", beta), mean=save(i, "mean", mean),
                       var=save(i, "var", var), epsilon=cfg["epsilon"])
        elif kind == "Rescaling":
            rec.update(scale=float(cfg["scale"]), offset=float(cfg["offset"]))
        elif kind in ("Activation", "ReLU"):
            rec.update(activation=cfg.get("activation", "relu"))
        elif kind in ("Flatten", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "GlobalMaxPooling2D",
                      "GlobalMaxPooling3D"):
            if cfg.get("keepdims"):
                raise SystemExit(f"layer {layer.name}: keepdims=True is not rebuilt")
        elif kind == "Softmax":
            continue  # dropped on the PyTorch side: both attack the logits
        else:
            raise SystemExit(f"layer {layer.name} ({kind}) is not rebuilt in PyTorch by this script")
        records.append(rec)
    return records


# ---- the reference side (runs in the Python that has torch) ---------------------------------
REFERENCE_NORMS = {"inf": "Linf", "2": "L2", "1": "L1"}


def reference_worker(scratch: Path, autoattack: str, norm: str, eps: float, threads: int, seed: int,
                     input_range: list[float], repeat: int = 1) -> None:
    import torch

    sys.path.insert(0, autoattack)
    from autoattack import AutoAttack

    torch.set_num_threads(threads)
    layers = json.loads((scratch / "layers.json").read_text())
    lo, hi = input_range
    model = torch.nn.Sequential(Affine(hi - lo, lo), rebuild(layers, scratch, torch)).eval()
    x = np.load(scratch / "x.npy")
    y = np.load(scratch / "y.npy")
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))  # channels first, 2-D or 3-D
    yt = torch.from_numpy(y)
    keras_logits = np.load(scratch / "logits.npy")
    with torch.no_grad():
        ours = model(xt[: len(keras_logits)]).numpy()
    gap = float(np.abs(ours - keras_logits).max())
    if gap > 1e-3:
        raise SystemExit(f"the PyTorch rebuild's logits differ from Keras' by {gap:.2e}: not comparable")
    classes = keras_logits.shape[1]
    adversary = AutoAttack(model, norm=REFERENCE_NORMS[norm], eps=eps, version="standard",
                           device="cpu", verbose=True, seed=seed)  # prints its robust accuracy per attack
    if x.ndim == 5:  # the reference's Square reads (C, H, W) from the shape: 2-D only (see the docstring)
        adversary.attacks_to_run = [a for a in adversary.attacks_to_run if a != "square"]
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, classes - 1)
    times, runs = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        runs.append(adversary.run_standard_evaluation(xt, yt, bs=len(x)))
        times.append(time.perf_counter() - started)
    x_adv, seconds = runs[0], min(times)  # the first run's points; the fastest run's time
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == yt).numpy()
    delta = (x_adv - xt).reshape(len(xt), -1)
    size = {"inf": delta.abs().amax(1), "2": delta.norm(dim=1), "1": delta.abs().sum(1)}[norm]
    np.save(scratch / "reference_robust.npy", robust)
    (scratch / "reference.json").write_text(json.dumps({"seconds": seconds, "gap": gap,
                                                        "largest": float(size.max().item()),
                                                        "attacks": adversary.attacks_to_run}))


def Affine(scale, offset):
    """x * scale + offset as a torch module (torch is imported in the reference's Python only)."""
    import torch

    class Affine(torch.nn.Module):
        def forward(self, x):
            return x * scale + offset

    return Affine()


def rebuild(layers, scratch: Path, torch):
    nn = torch.nn
    mods = []

    def load(name):
        return torch.from_numpy(np.load(scratch / name))

    def activation(name):
        return {"relu": nn.ReLU(), "linear": None, "softmax": None, "tanh": nn.Tanh(),
                "sigmoid": nn.Sigmoid()}[name]  # softmax dropped: Égide attacks logits too

    class ToChannelsLast(nn.Module):  # Keras flattens NHWC (NDHWC)
        def forward(self, x):
            return x.permute(0, *range(2, x.dim()), 1)

    class ChannelAffine(nn.Module):
        def __init__(self, scale, shift):
            super().__init__()
            self.scale, self.shift = scale, shift

        def forward(self, x):
            shape = (1, -1) + (1,) * (x.dim() - 2)
            return x * self.scale.view(shape) + self.shift.view(shape)

    class GlobalMax(nn.Module):
        def forward(self, x):
            return x.flatten(2).amax(2)

    for rec in layers:
        kind = rec["kind"]
        rank = 3 if kind.endswith("3D") else 2  # spatial axes
        if kind in ("Conv2D", "Conv3D"):
            k = load(rec["kernel"])
            k = k.permute(rank + 1, rank, *range(rank)).contiguous()  # (..., in, out) -> (out, in, ...)
            conv = (nn.Conv3d if rank == 3 else nn.Conv2d)(
                k.shape[1], k.shape[0], tuple(k.shape[2:]), stride=tuple(rec["strides"]),
                padding="same" if rec["padding"] == "same" else 0, dilation=tuple(rec["dilation"]),
                bias=rec["bias"] is not None)
            conv.weight.data = k
            if rec["bias"]:
                conv.bias.data = load(rec["bias"])
            mods += [conv, activation(rec["activation"])]
        elif kind == "Dense":
            k = load(rec["kernel"])
            dense = nn.Linear(k.shape[0], k.shape[1], bias=rec["bias"] is not None)
            dense.weight.data = k.t().contiguous()
            if rec["bias"]:
                dense.bias.data = load(rec["bias"])
            mods += [dense, activation(rec["activation"])]
        elif kind.startswith("MaxPooling"):
            mods.append((nn.MaxPool3d if rank == 3 else nn.MaxPool2d)(tuple(rec["pool"]), tuple(rec["strides"])))
        elif kind.startswith("AveragePooling"):
            mods.append((nn.AvgPool3d if rank == 3 else nn.AvgPool2d)(tuple(rec["pool"]), tuple(rec["strides"])))
        elif kind == "BatchNormalization":  # inference: a per-channel affine map, on axis 1 at any rank
            gamma, beta, mean, var = (load(rec[name]) for name in ("gamma", "beta", "mean", "var"))
            scale = gamma / torch.sqrt(var + rec["epsilon"])
            mods.append(ChannelAffine(scale, beta - mean * scale))
        elif kind == "Rescaling":
            mods.append(Affine(rec["scale"], rec["offset"]))
        elif kind in ("Activation", "ReLU"):
            mods.append(activation(rec["activation"]))
        elif kind == "Flatten":
            mods += [ToChannelsLast(), nn.Flatten()]
        elif kind.startswith("GlobalAveragePooling"):
            mods += [(nn.AdaptiveAvgPool3d if rank == 3 else nn.AdaptiveAvgPool2d)(1), nn.Flatten()]
        elif kind.startswith("GlobalMaxPooling"):
            mods.append(GlobalMax())
    return nn.Sequential(*[m for m in mods if m is not None])


# ---- the comparison -------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", help="a Python with torch and numpy")
    parser.add_argument("--autoattack", help="a checkout of fra31/auto-attack (the folder holding autoattack/)")
    parser.add_argument("--model", default="brain-tumor-cnn", help="named model or .keras path")
    parser.add_argument("--data", help="named data set, .npz or folder (default: the model's)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--eps", default="4/255")
    parser.add_argument("--norm", default="inf", choices=["inf", "2", "1"])
    parser.add_argument("--suite", default="standard,fast", help="Égide's protocols to run, comma-separated")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0, help="seed of both sides' random starts")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each side this many times and keep its fastest time (on a shared machine, "
                        "load bursts make one run's time noisy); the points are the first run's")
    parser.add_argument("--save", help="also write the numbers to this JSON file")
    parser.add_argument("--input-range", help=argparse.SUPPRESS)
    parser.add_argument("--reference-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.reference_worker:
        reference_worker(Path(args.reference_worker), args.autoattack, args.norm, float(args.eps), args.threads,
                         args.seed, json.loads(args.input_range), args.repeat)
        return 0
    if not (args.reference_python and args.autoattack):
        parser.error("--reference-python and --autoattack are required")

    with tempfile.TemporaryDirectory(prefix="egide-crosscheck-") as tmp:
        scratch = Path(tmp)
        ours = run_egide(args, scratch)
        subprocess.run([args.reference_python, __file__, "--reference-worker", tmp, "--autoattack",
                        args.autoattack, "--norm", args.norm, "--eps", repr(ours["eps"]),
                        "--threads", str(args.threads), "--seed", str(args.seed), "--repeat", str(args.repeat),
                        "--input-range", json.dumps(ours["input_range"])], check=True)
        theirs = json.loads((scratch / "reference.json").read_text())
        ref_robust = np.load(scratch / "reference_robust.npy")

    n = len(ref_robust)
    unit = {"inf": "L-inf", "2": "L2", "1": "L1"}[args.norm]
    print(f"\n{args.model} on {n} images, eps {args.eps} ({unit}), {args.threads} threads each; clean accuracy "
          f"{ours['clean'].mean():.1%}; PyTorch rebuild within {theirs['gap']:.1e} of Keras' logits; the "
          f"reference's largest {unit} perturbation {theirs['largest']:.4g}")
    print(f"{'':<26}{'robust acc':>11}{'seconds':>9}{'speed-up':>10}{'only it broke':>15}{'only ref broke':>16}")
    print(f"{'AutoAttack (reference)':<26}{ref_robust.mean():>11.1%}{theirs['seconds']:>9.1f}"
          f"    ({', '.join(theirs['attacks'])})")
    rows = {}
    for protocol, r in ours["suites"].items():
        only_ours = int(np.sum(~r["robust"] & ref_robust))
        only_theirs = int(np.sum(r["robust"] & ~ref_robust))
        speedup = theirs["seconds"] / r["seconds"]
        print(f"{'Égide --suite ' + protocol:<26}{r['robust'].mean():>11.1%}{r['seconds']:>9.1f}{speedup:>9.2f}x"
              f"{only_ours:>15}{only_theirs:>16}")
        stages = ", ".join(f"{_member(label, ran)} {after:.1%} ({sec:.0f} s)"
                           for label, (ran, after, sec) in r["stages"].items())
        print(f"    after each member: {stages}")
        rows[protocol] = {"robust_accuracy": float(r["robust"].mean()), "seconds": r["seconds"],
                          "speedup": speedup, "only_egide_broke": only_ours, "only_reference_broke": only_theirs,
                          "robust_points": np.flatnonzero(r["robust"]).tolist()}
    names = list(ours["suites"])
    for a in names:
        for b in names:
            if a != b:
                missed = int(np.sum(ours["suites"][a]["robust"] & ~ours["suites"][b]["robust"]))
                print(f"points {a} leaves robust that {b} breaks: {missed}")
                rows[a][f"robust_but_{b}_broke"] = missed
    for protocol, row in rows.items():
        verdict = "at least as strong as" if row["robust_accuracy"] <= ref_robust.mean() else "WEAKER than"
        print(f"Égide --suite {protocol} is {verdict} the reference here")
    if args.save:
        Path(args.save).write_text(json.dumps({
            "model": args.model, "data": args.data, "limit": args.limit, "images": n, "eps": args.eps,
            "norm": args.norm, "threads": args.threads, "seed": args.seed, "repeat": args.repeat,
            "clean_accuracy": float(ours["clean"].mean()),
            "reference": {"robust_accuracy": float(ref_robust.mean()), "seconds": theirs["seconds"],
                          "attacks": theirs["attacks"],
                          "largest_perturbation": theirs["largest"],
                          "robust_points": np.flatnonzero(ref_robust).tolist()},
            "egide": rows}, indent=2))
    return 0


def _member(label: str, ran: str | None) -> str:
    return label if ran == label else f"{label} ({ran or 'left out'})"


if __name__ == "__main__":
    raise SystemExit(main())
