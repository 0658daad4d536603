"""A real PyTorch model through ONNX: MONAI's 2-D ResNet-18, trained on the demo phantom in
PyTorch, exported with torch.onnx, then converted, checked and evaluated by egide.

    .venv/bin/python benchmarks/onnx_pytorch.py --torch-python /path/to/venv-with-torch/bin/python \
        [--epochs 3] [--images 96] [--out build/onnx-pytorch]

The PyTorch side runs in another Python (one with `torch`, `monai`, `onnx` and `onnxscript`:
`pip install torch monai onnx onnxscript`), so egide's environment never needs PyTorch. It prints
PyTorch's own test accuracy, the conversion time and the largest logit difference against
onnxruntime, egide's clean accuracy (it should match PyTorch's), and the cost of PGD-20 and of the
`fast` suite on the converted model.

It then builds the same ResNet-18 natively in Keras (channels-last, the padding written out as
PyTorch pads), copies PyTorch's trained weights into it, and runs the same two jobs on that twin:
same weights, same images, so the time ratio is what the conversion costs, nothing else.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TORCH_SIDE = r'''
import sys, time, numpy as np, torch
from monai.networks.nets import resnet18
folder = sys.argv[1]; epochs = int(sys.argv[2])
torch.manual_seed(0)
train, test = np.load(folder + "/train.npz"), np.load(folder + "/test.npz")
to_t = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW
xtr, ytr, xte, yte = to_t(train["x"]), torch.from_numpy(train["y"]).long(), to_t(test["x"]), torch.from_numpy(test["y"])
net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=int(ytr.max()) + 1)
opt = torch.optim.Adam(net.parameters(), 1e-3)
started = time.perf_counter()
for epoch in range(epochs):
    net.train()
    for idx in torch.randperm(len(xtr)).split(64):
        opt.zero_grad(); torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx]).backward(); opt.step()
net.eval()
with torch.no_grad():
    acc = (net(xte).argmax(1) == yte).float().mean().item()
print(f"torch: {epochs} epochs in {time.perf_counter() - started:.0f} s, test accuracy {acc:.1%}")
torch.onnx.export(net, (xte[:1],), folder + "/resnet18.onnx", input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
print("exported", folder + "/resnet18.onnx")
np.savez(folder + "/resnet18_weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
'''


def keras_resnet18(weights: dict, shape: tuple, classes: int):
    """MONAI's 2-D ResNet-18 (7x7 stem at stride 1, max pool, four stages of two basic blocks, a 1x1
    convolution with bias on the shortcuts that change shape), written in Keras with PyTorch's weights."""
    import keras
    from keras import layers

    def conv(x, name, filters, kernel, stride, pad, bias=False):
        if pad:
            x = layers.ZeroPadding2D(pad)(x)  # PyTorch pads both sides alike; Keras' "same" does not at stride 2
        layer = layers.Conv2D(filters, kernel, stride, use_bias=bias, name=name.replace(".", "_"))
        x = layer(x)
        kernel_hwio = weights[name + ".weight"].transpose(2, 3, 1, 0)
        layer.set_weights([kernel_hwio, weights[name + ".bias"]] if bias else [kernel_hwio])
        return x

    def norm(x, name):
        layer = layers.BatchNormalization(epsilon=1e-5, name=name.replace(".", "_"))
        x = layer(x)
        layer.set_weights([weights[name + "." + k] for k in ("weight", "bias", "running_mean", "running_var")])
        return x

    inputs = keras.Input(shape)
    x = layers.ReLU()(norm(conv(inputs, "conv1", 64, 7, 1, 3), "bn1"))
    x = layers.MaxPooling2D(3, 2)(layers.ZeroPadding2D(1)(x))  # after ReLU, zero padding equals -inf padding
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            name, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            shortcut = x
            if f"{name}.downsample.0.weight" in weights:
                shortcut = norm(conv(x, f"{name}.downsample.0", filters, 1, stride, 0, bias=True),
                                f"{name}.downsample.1")
            y = layers.ReLU()(norm(conv(x, f"{name}.conv1", filters, 3, stride, 1), f"{name}.bn1"))
            y = norm(conv(y, f"{name}.conv2", filters, 3, 1, 1), f"{name}.bn2")
            x = layers.ReLU()(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    fc = layers.Dense(classes, name="fc")
    outputs = fc(x)
    fc.set_weights([weights["fc.weight"].T, weights["fc.bias"]])
    return keras.Model(inputs, outputs, name="resnet18_keras")


def time_jobs(egide, clf, model_path: Path, x, y, images: int) -> dict:
    """PGD-20 (fixed work) and the `fast` suite (work that follows the model's answers) on one model."""
    from egide.lab.evaluation.pipeline import evaluate

    pgd = egide.registry().create("attack", "pgd", eps=4 / 255, steps=20, early_stop=False)
    pgd.run(clf, x[:4], y[:4])  # compile
    started = time.perf_counter()
    result = pgd.run(clf, x, y, seed=0)
    times = {"pgd": time.perf_counter() - started, "pgd_robust": result.robust_accuracy}
    started = time.perf_counter()
    report = evaluate({"model": str(model_path), "data": "brain-tumor-phantom", "limit": images,
                       "attacks": [{"plugin": "fgsm"}], "eps": ["4/255"], "suite": "fast", "gallery": 0})
    times.update(suite=time.perf_counter() - started, suite_robust=report.worst_case["4/255"])
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True, help="a Python with torch, monai, onnx, onnxscript")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=96, help="test images the attacks run on")
    parser.add_argument("--out", default="build/onnx-pytorch")
    args = parser.parse_args()

    import egide

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        data = egide.datasets.load("brain-tumor-phantom", split=split)
        np.savez(out / f"{split}.npz", x=data.x, y=data.y)
    subprocess.run([args.torch_python, "-c", TORCH_SIDE, str(out), str(args.epochs)], check=True)

    started = time.perf_counter()
    clf = egide.Classifier.load(out / "resnet18.onnx")
    converted = time.perf_counter() - started
    check = clf.conversion
    print(f"egide: converted and checked in {converted:.1f} s; largest output difference against onnxruntime "
          f"{check['max_abs_difference']:.2g} (tolerance {check['tolerance']:.2g}); "
          f"{clf.model.count_params():,} weights")
    test = egide.datasets.load("brain-tumor-phantom", split="test")
    print(f"egide: clean accuracy {np.mean(clf.predict_logits(test.x).argmax(1) == test.y):.1%} on "
          f"{len(test.y)} test images")
    x, y = test.x[: args.images], test.y[: args.images]
    onnx_times = time_jobs(egide, clf, out / "resnet18.onnx", x, y, args.images)

    weights = dict(np.load(out / "resnet18_weights.npz"))
    twin = keras_resnet18(weights, test.x.shape[1:], int(test.y.max()) + 1)
    twin.save(out / "resnet18_keras.keras")
    twin_clf = egide.Classifier.load(out / "resnet18_keras.keras")
    gap = np.max(np.abs(twin_clf.predict_logits(test.x[:32]) - clf.predict_logits(test.x[:32])))
    print(f"keras twin: same weights, largest logit difference from the converted model {gap:.2g}")
    keras_times = time_jobs(egide, twin_clf, out / "resnet18_keras.keras", x, y, args.images)

    print(f"\n{'job on ' + str(len(x)) + ' images':<28} {'ONNX':>14} {'Keras twin':>14} {'ratio':>7}")
    for job, label in (("pgd", "PGD-20 at 4/255"), ("suite", "suite fast at 4/255")):
        print(f"{label:<28} {onnx_times[job]:>8.1f} s {onnx_times[job + '_robust']:>4.0%} "
              f"{keras_times[job]:>8.1f} s {keras_times[job + '_robust']:>4.0%} "
              f"{onnx_times[job] / keras_times[job]:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
