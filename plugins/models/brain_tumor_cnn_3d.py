"""`brain-tumor-cnn-3d`: the 3-D demo model — a Keras Conv3D classifier of whole brain volumes.

It is trained on `brain-tumor-phantom-3d` (32x32x32 voxels, one channel) by `egide train` with
the recipe `RECIPE` below; the trained file ships in `data/brain_tumor_cnn_3d.keras` so the 3-D
demo is ready on a fresh machine. It outputs logits over glioma, meningioma, notumor, pituitary.
"""

from __future__ import annotations

from pathlib import Path

from egide.core import Classifier, ModelError, ModelSource, hookimpl

WEIGHTS = Path(__file__).parent / "data" / "brain_tumor_cnn_3d.keras"
# The recipe that reproduces the shipped file:
#   egide train --architecture brain-tumor-cnn-3d --data brain-tumor-phantom-3d --out <file>
RECIPE = {"epochs": 24, "batch_size": 32, "learning_rate": 1e-3, "seed": 0}


def build(input_shape=(32, 32, 32, 1), num_classes: int = 4):
    """Three Conv3D blocks, then the strongest response of each of 64 feature maps anywhere in the
    volume (global max pooling: a lesion is found wherever it sits), logits out."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv3D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling3D(),
            layers.Conv3D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling3D(),
            layers.Conv3D(64, 3, padding="same", activation="relu"),
            layers.GlobalMaxPooling3D(),
            layers.Dense(num_classes),
        ],
        name="brain_tumor_cnn_3d",
    )


class BrainTumorCNN3D(ModelSource):
    """Conv3D classifier trained on the 3-D brain-tumour phantom (32^3 voxels, 4 classes)."""

    name = "brain-tumor-cnn-3d"
    title = "Brain-tumour MRI volume CNN (3-D demo)"
    dataset = "brain-tumor-phantom-3d"
    build = staticmethod(build)
    recipe = RECIPE

    def load(self) -> Classifier:
        if not WEIGHTS.is_file():
            raise ModelError(
                f"the 3-D demo model file {WEIGHTS} is missing; recreate it with `egide train "
                f"--architecture brain-tumor-cnn-3d --data brain-tumor-phantom-3d --out {WEIGHTS}`"
            )
        return Classifier.load(WEIGHTS, input_range=(0.0, 1.0))


@hookimpl
def egide_register_models(register):
    register(BrainTumorCNN3D)
