"""`brain-tumor-cnn`: the demo model — a Keras Sequential CNN for 64x64 brain-MRI slices.

It is trained on the `brain-tumor-phantom` data set by `egide train` (the same recipe as
`RECIPE` below); the trained file ships in `data/brain_tumor_cnn.keras` so the demo is ready on
a fresh machine without a wait. It outputs logits over glioma, meningioma, notumor, pituitary.
"""

from __future__ import annotations

from pathlib import Path

from egide.core import Classifier, ModelError, ModelSource, hookimpl

WEIGHTS = Path(__file__).parent / "data" / "brain_tumor_cnn.keras"
# The training recipe that reproduces the shipped file: egide train --data brain-tumor-phantom
RECIPE = {"epochs": 40, "batch_size": 64, "learning_rate": 1e-3, "seed": 0}


def build(input_shape=(64, 64, 1), num_classes: int = 4):
    """The architecture: three Conv-Conv-Pool blocks and a small dense head, logits out."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes),
        ],
        name="brain_tumor_cnn",
    )


class BrainTumorCNN(ModelSource):
    """Sequential CNN trained on the brain-tumour phantom (64x64 grayscale, 4 classes)."""

    name = "brain-tumor-cnn"
    title = "Brain-tumour MRI CNN (demo)"
    dataset = "brain-tumor-phantom"
    build = staticmethod(build)
    recipe = RECIPE

    def load(self) -> Classifier:
        if not WEIGHTS.is_file():
            raise ModelError(
                f"the demo model file {WEIGHTS} is missing; recreate it with "
                f"`egide train --data brain-tumor-phantom --out {WEIGHTS}`"
            )
        return Classifier.load(WEIGHTS, input_range=(0.0, 1.0))


@hookimpl
def egide_register_models(register):
    register(BrainTumorCNN)
