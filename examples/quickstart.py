"""Quick start: make a small data set and model, then attack it with every attack from the CLI.

    .venv/bin/python examples/quickstart.py [--out .egide-demo]

It prints each `egide` command before running it, so you can run them yourself on your own
model (.keras/.h5) and data (.npz or a folder of class subfolders).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.bars import CLASSES, make_bars, train_cnn  # noqa: E402

ATTACKS = {
    "fgsm": ["eps=8/255"],
    "bim": ["eps=8/255", "steps=10"],
    "pgd": ["eps=8/255", "steps=20", "restarts=2"],
    "mim": ["eps=8/255", "steps=10"],
    "cw": ["binary_search_steps=5", "steps=100"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".egide-demo", help="folder for the data, model and results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, model_path = out / "bars.npz", out / "bars_cnn.keras"

    if not data.exists() or not model_path.exists():
        import numpy as np

        print(f"making the bars data set and training a small CNN into {out}/ ...", flush=True)
        x_train, y_train = make_bars(2000, seed=1)
        x_test, y_test = make_bars(500, seed=2)
        np.savez_compressed(
            data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
            class_names=np.array(CLASSES),
        )
        train_cnn(x_train, y_train).save(model_path)

    egide = [str(Path(sys.executable).with_name("egide"))]
    run(egide + ["plugins"])
    import egide as package

    available = package.registry().names("attack")
    for name, params in ATTACKS.items():
        if name not in available:
            print(f"\n(skipping {name}: not installed)")
            continue
        command = egide + [
            "attack", "--model", str(model_path), "--data", str(data), "--split", "test",
            "--attack", name, "--out", str(out / f"{name}.npz"),
        ]
        for p in params:
            command += ["--param", p]
        run(command)
    return 0


def run(command: list[str]) -> None:
    shown = ["egide"] + command[1:]
    print(f"\n$ {shlex.join(shown)}", flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":
    sys.exit(main())
