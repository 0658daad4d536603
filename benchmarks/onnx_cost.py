"""An attack on a converted ONNX model against the same network written in Keras.

    .venv/bin/python benchmarks/onnx_cost.py [--images 128] [--steps 20] [--repeats 3]

The demo CNN's own weights are written as an ONNX graph (tests/onnx_models.py, NCHW as PyTorch
exports), loaded back through `egide.Classifier.load` (onnx2keras, checked against onnxruntime),
and PGD runs on both with the same images, seed and steps. It prints the conversion time, each
run's seconds (median of the repeats) and the ratio converted / Keras (goal: within 1.2x), and how
many images end in the same class on both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import egide
    from onnx_models import demo_as_onnx

    keras_clf = egide.Classifier.load("brain-tumor-cnn")
    data = egide.datasets.load("brain-tumor-phantom", split="test")
    x, y = data.x[: args.images], data.y[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        path = demo_as_onnx(keras_clf.model, Path(tmp) / "demo.onnx")
        started = time.perf_counter()
        onnx_clf = egide.Classifier.load(path)
        converted_in = time.perf_counter() - started
    pgd = egide.registry().create("attack", "pgd", eps=4 / 255, steps=args.steps, early_stop=False)
    seconds = {"keras": [], "onnx": []}
    results = {}
    for name, clf in (("keras", keras_clf), ("onnx", onnx_clf)):
        pgd.run(clf, x[:8], y[:8], batch_size=len(x))  # compile
    for _ in range(args.repeats):
        for name, clf in (("keras", keras_clf), ("onnx", onnx_clf)):
            started = time.perf_counter()
            results[name] = pgd.run(clf, x, y, batch_size=len(x), seed=0)
            seconds[name].append(time.perf_counter() - started)
    keras_s, onnx_s = (float(np.median(seconds[k])) for k in ("keras", "onnx"))
    same = float(np.mean(results["keras"].y_pred_adv == results["onnx"].y_pred_adv))
    check = onnx_clf.conversion
    print(f"conversion + onnxruntime check: {converted_in:.2f} s (max |difference| {check['max_abs_difference']:.2g}, "
          f"tolerance {check['tolerance']:.2g})")
    print(f"PGD {args.steps} steps on {len(x)} images: Keras {keras_s:.2f} s, converted ONNX {onnx_s:.2f} s, "
          f"ratio {onnx_s / keras_s:.2f}x (goal <= 1.2x); same adversarial class on {same:.1%} of the images")
    print(f"robust accuracy: Keras {results['keras'].robust_accuracy:.1%}, ONNX {results['onnx'].robust_accuracy:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
