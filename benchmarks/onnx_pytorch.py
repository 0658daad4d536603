"""A real PyTorch model through ONNX: MONAI's 2-D ResNet-18, trained on the demo phantom in
PyTorch, exported with torch.onnx, then converted, checked and evaluated by egide.

    .venv/bin/python benchmarks/onnx_pytorch.py --torch-python /path/to/venv-with-torch/bin/python \
        [--epochs 3] [--images 96] [--out build/onnx-pytorch]

The PyTorch side runs in another Python (one with `torch`, `monai`, `onnx` and `onnxscript`:
`pip install torch monai onnx onnxscript`), so egide's environment never needs PyTorch. It prints
PyTorch's own test accuracy, the conversion time and the largest logit difference against
onnxruntime, egide's clean accuracy (it should match PyTorch's), and the cost of PGD-20 and of the
`fast` suite on the converted model.
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
'''


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
    pgd = egide.registry().create("attack", "pgd", eps=4 / 255, steps=20, early_stop=False)
    pgd.run(clf, x[:4], y[:4])  # compile
    started = time.perf_counter()
    result = pgd.run(clf, x, y, seed=0)
    print(f"PGD-20 at 4/255 on {len(x)} images: {time.perf_counter() - started:.1f} s, robust accuracy "
          f"{result.robust_accuracy:.1%}")
    from egide.lab.evaluation.pipeline import evaluate

    started = time.perf_counter()
    report = evaluate({"model": str(out / "resnet18.onnx"), "data": "brain-tumor-phantom", "limit": args.images,
                       "attacks": [{"plugin": "fgsm"}], "eps": ["4/255"], "suite": "fast", "gallery": 0})
    print(f"suite fast at 4/255 on {args.images} images: {time.perf_counter() - started:.0f} s, robust accuracy "
          f"{report.worst_case['4/255']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
