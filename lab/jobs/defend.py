"""A trainer defense (adversarial training, TRADES...) fitted on a data set's train split: the job
that `egide defend` and the API's defend job both run. Each face then keeps the trained model
its own way (a file; a model the server registers)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from egide.core.classifier import Classifier
from egide.core.dataset import Dataset
from egide.core.errors import InputError
from egide.core.registry import Registry
from egide.lab.data import Draw, for_classifier
from egide.lab.data.splits import match
from egide.lab.evaluation.images import DataSource

from .attack import Seed


class DefendConfig(BaseModel):
    """What a defend job runs: everything that decides the trained model."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(min_length=1, max_length=128,
                        description="Trainer plugin name (a defense with needs_training_data)")
    params: dict[str, Any] = Field(default_factory=dict, description="The trainer's parameters")
    model: str = Field(min_length=1, description="A named model (or a model file) to start from")
    data: str = Field(min_length=1, description="A named data set (or a file or folder) with a train split")
    limit: int | None = Field(None, ge=1, description="Train on N training images only, drawn stratified by "
                              "class under `seed`")
    seed: Seed = 0


@dataclass
class DefendOutcome:
    trained: Classifier
    trainer: Any  # the trainer plugin, with its history and best epoch
    train: Dataset
    val: Dataset | None  # None: the trainer held out a seeded 10% of train
    seconds: float


def trainer_of(config: DefendConfig, registry: Registry):
    """The trainer plugin `config` names, its parameters checked (before anything slow loads)."""
    trainer = registry.create("defense", config.plugin, **config.params)
    if not trainer.needs_training_data:
        raise InputError(
            f"'{trainer.name}' is a preprocessor: it wraps a model's inputs and has nothing to train; "
            f"apply it where the model is attacked or evaluated (an attack's defense, `egide attack "
            f"--defense {trainer.name}`, `egide evaluate --defenses {trainer.name}`)")
    return trainer


def train_defended(config: DefendConfig | dict, *, classifier: Classifier, source: DataSource,
                   registry: Registry, checkpoint: Path | None = None, progress=None,
                   trainer=None) -> DefendOutcome:
    """Fit the trainer of `config` on the train split (validated on the val split, else on a
    seeded 10% of train held out), resuming from `checkpoint` when it holds this run's epochs.
    `trainer`: the one `trainer_of(config)` made, when the caller reads its history as it goes."""
    if isinstance(config, dict):
        config = DefendConfig(**config)
    if classifier.conversion is not None:
        raise InputError(f"{config.model}: trainers fine-tune Keras models and save them as .keras; a model "
                         f"converted from {classifier.conversion['from']} cannot be saved that way. Train the "
                         "defense in the original framework and export it again (its attacks, defenses and "
                         "detectors all run on the converted model)")
    trainer = trainer or trainer_of(config, registry)
    train_split, val_split = (match(s, source.splits) for s in ("train", "val"))
    if train_split is None:
        raise InputError(f"{config.data} has no train split to train on"
                         + (f" (its splits: {', '.join(source.splits)})" if source.splits else ""))
    draw = Draw(config.limit, config.seed) if config.limit else None
    train = for_classifier(source.load(train_split, draw), classifier)
    val = for_classifier(source.load(val_split, None), classifier) if val_split else None
    started = time.perf_counter()
    trained = trainer.apply(classifier, train=train, val=val, progress=progress, checkpoint=checkpoint,
                            seed=config.seed)
    return DefendOutcome(trained, trainer, train, val, time.perf_counter() - started)
