"""The models `autoattack_crosscheck.py` is run on besides the demo, built here from the demo's
train split so that anyone can rebuild them (nothing is downloaded):

    .venv/bin/python benchmarks/crosscheck_models.py --out /tmp/crosscheck-models

  adversarial.keras   the demo CNN after PGD adversarial training (egide defend, 4/255, 2 epochs)
  batchnorm.keras     Rescaling(1/255) input (pixels 0..255), Conv-BatchNorm-ReLU blocks, global
                      average pooling: another architecture and another input range
  softmax.keras       a wider CNN whose last layer is a softmax (Égide attacks its logits)

Each is trained under a fixed seed for a few epochs on 2 cores (about a minute each); the point is
different weights and shapes for the cross-check, not the best accuracy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def build_batchnorm(keras, shape, classes):
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes)(x), name="crosscheck_batchnorm")


def build_softmax(keras, shape, classes):
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(32, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="crosscheck_softmax")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the .keras files")
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from egide.lab.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import numpy as np

    from egide.lab.data import load

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load("brain-tumor-phantom", split="train"), load("brain-tumor-phantom", split="test")
    classes = int(train.y.max()) + 1
    shape = train.x.shape[1:]
    for name, build, scale, loss in (
        ("batchnorm", build_batchnorm, 255.0, keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
        ("softmax", build_softmax, 1.0, keras.losses.SparseCategoricalCrossentropy()),
    ):
        keras.utils.set_random_seed(0)
        model = build(keras, shape, classes)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
        model.fit(train.x * scale, train.y, epochs=args.epochs, batch_size=64, verbose=0)
        accuracy = float(np.mean(np.argmax(model.predict(test.x * scale, verbose=0), 1) == test.y))
        model.save(out / f"{name}.keras")
        print(f"{name}.keras: clean test accuracy {accuracy:.1%}")

    adversarial = out / "adversarial.keras"
    subprocess.run([sys.executable, "-m", "egide.lab.cli", "defend", "--defense", "adversarial-training",
                    "--model", "brain-tumor-cnn", "--data", "brain-tumor-phantom", "--out", str(adversarial),
                    "--param", "eps=4/255", "--param", "epochs=2", "--no-checkpoint", "--no-progress"], check=True)
    print(f"{adversarial.name}: written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
