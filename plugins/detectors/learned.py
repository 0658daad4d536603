"""Learned detector (Metzen, Genewein, Fischer & Bischoff, "On Detecting Adversarial
Perturbations", ICLR 2017).

A small "detector subnetwork" is attached to an intermediate layer of the classifier and
trained, with the classifier frozen, to tell the activations of clean inputs from those of
adversarial ones. The paper's subnetwork is convolutions with max pooling, a 1x1 convolution
to the two classes and global average pooling; here it is the same shape, narrower
(`filters`), with one output: the adversarial logit, which is the score.

Default layer: the middle one of the classifier's convolutional feature maps (the paper tries
positions along the whole network). On the demo CNN, fitted on PGD, the other conv layers tried
gave the same AUC on the L-inf attacks and at best 0.65 instead of 0.55 on C&W. The activations
are standardised per channel with the clean fit data's statistics before the subnetwork, so one
learning rate suits any model. The paper's "dynamic adversary" training (attacking the
classifier and the detector together) is not done: fit on adversarial examples you generated.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from egide.core import Detector, InputError, hookimpl
from egide.core.features import feature_function, feature_layers

from . import _nets


class Learned(Detector):
    """A small network on hidden activations, trained to tell clean from adversarial inputs."""

    name = "learned"
    title = "Learned detector subnetwork (Metzen et al. 2017)"
    supervised = True

    class Params(BaseModel, extra="forbid", frozen=True):
        layer: str = Field(
            "", description="Layer whose activations the detector reads; empty = the middle "
            "convolutional feature map",
        )
        filters: int = Field(32, ge=1, le=512, description="Channels of the detector's first convolution")
        epochs: int = Field(20, ge=1, le=1000, description="Training epochs")
        batch_size: int = Field(64, ge=1, le=4096, description="Training minibatch size")
        learning_rate: float = Field(1e-3, gt=0, le=1, description="Adam learning rate")
        fpr: float = Field(0.05, gt=0, lt=1, description="Target false-positive rate on clean data")
        seed: int = Field(0, ge=0, description="Seed of the weights and the shuffle")

    # ---- where it reads --------------------------------------------------------------------
    def _layer(self, clf) -> str:
        if self.params.layer:
            return self.params.layer
        names = feature_layers(clf)
        maps = [n for n in names if len(clf.model.get_layer(n).output.shape) == 4]
        return maps[len(maps) // 2] if maps else names[len(names) // 2]

    def _reader(self, clf):
        """fn(x) -> activations of the chosen layer, in their own shape (B, H, W, C) or (B, D)."""
        from keras import ops

        name = self._layer(clf)
        flat = feature_function(clf, [name], pool=False)
        shape = tuple(clf.model.get_layer(name).output.shape[1:])
        return (lambda x: ops.reshape(flat(x)[0], (-1, *shape))), shape

    # ---- the subnetwork ------------------------------------------------------------------
    def _build(self, shape):
        import keras
        from keras import layers

        f, seed = self.params.filters, self.params.seed
        init = _nets.initializer
        if len(shape) in (3, 4):  # feature maps of an image (H, W, C) or of a volume (D, H, W, C)
            conv, pool, average = ((layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D)
                                   if len(shape) == 3 else
                                   (layers.Conv3D, layers.MaxPooling3D, layers.GlobalAveragePooling3D))
            body = [
                conv(f, 3, padding="same", activation="relu", kernel_initializer=init(seed)),
                pool(2, padding="same"),
                conv(2 * f, 3, padding="same", activation="relu", kernel_initializer=init(seed + 1)),
                pool(2, padding="same"),
                conv(2 * f, 3, padding="same", activation="relu", kernel_initializer=init(seed + 2)),
                conv(1, 1, kernel_initializer=init(seed + 3)),
                average(),
            ]
        else:  # a vector layer: the same depth as dense layers
            body = [
                layers.Dense(4 * f, activation="relu", kernel_initializer=init(seed)),
                layers.Dense(2 * f, activation="relu", kernel_initializer=init(seed + 1)),
                layers.Dense(1, kernel_initializer=init(seed + 3)),
            ]
        return keras.Sequential([keras.Input(shape), *body], name="learned_detector")

    def _fit(self, clf, x_clean, x_adv):
        import keras

        reader, shape = self._reader(clf)
        read = self.compiled(clf, lambda: reader, "features", autograph=False)
        clean, adv = _nets.run_batches(read, x_clean), _nets.run_batches(read, x_adv)
        axes = tuple(range(clean.ndim - 1))  # per channel (or per unit for a vector layer)
        self._mean = clean.mean(axis=axes).astype(np.float32)
        std = clean.std(axis=axes)
        self._std = np.where(std > 0, std, 1.0).astype(np.float32)
        inputs = (np.concatenate([clean, adv]) - self._mean) / self._std
        targets = np.r_[np.zeros(len(clean)), np.ones(len(adv))].astype(np.float32)[:, None]
        self._net = self._build(shape)
        steps = _nets.epochs_to_steps(self.params.epochs, len(inputs), self.params.batch_size)
        _nets.train(self._net, keras.losses.BinaryCrossentropy(from_logits=True),
                    lambda idx, rng: (inputs[idx], targets[idx]), len(inputs),
                    steps=steps, batch_size=self.params.batch_size,
                    learning_rate=self.params.learning_rate, seed=self.params.seed)
        self.forget_compiled()

    # ---- scoring -----------------------------------------------------------------------
    def _score(self, clf, x):
        score = self.compiled(clf, lambda: self._score_function(clf), autograph=False)
        return _nets.run_batches(score, x)

    score_gradient = "exact"

    def _differentiable_score(self, clf):
        return self._score_function(clf)

    def _score_function(self, clf):
        reader, _ = self._reader(clf)
        net, mean, std = self._net, self._mean, self._std

        def score(x):
            return net((reader(x) - mean) / std, training=False)[:, 0]

        return score

    # ---- saving ------------------------------------------------------------------------
    def _state(self):
        return {**_nets.weights_state(self._net, "net"), "mean": self._mean, "std": self._std}

    def _load_state(self, clf, state):
        _, shape = self._reader(clf)
        self._mean, self._std = state["mean"], state["std"]
        if self._mean.shape != (shape[-1],):
            raise InputError(f"learned: the saved detector read {self._mean.shape[0]} channels but "
                             f"layer '{self._layer(clf)}' of this model has {shape[-1]}")
        self._net = self._build(shape)
        _nets.load_weights(self._net, state, "net")
        self.forget_compiled()


@hookimpl
def egide_register_detectors(register):
    register(Learned)
