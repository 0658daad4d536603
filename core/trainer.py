"""Trainer: the base class of defenses that fit a new, more robust model (adversarial training).

A trainer plugin declares only how one batch becomes its training objective:

    adversarial(ctx, x, y, eps, seed) -> the inputs to train on (its inner attack)
    loss(ctx, x, x_train, y)          -> the scalar loss (default: cross-entropy on x_train)

Both run inside ONE compiled `tf.function` per batch (`compiled_step`) — inner attack, forward,
backward, optimizer update — so the inner attack's steps never leave the graph. The loop around
it is the same for every trainer and is application code: it lives in the lab
(`egide.lab.training.trainer_loop`: input checks, a copy of the model, seeded shuffled batches, the eps
warm-up, validation, the best epoch, resumable checkpoints). `apply()` runs it: the package root
plugs it in with `use_training_loop`, so the kernel names no application module
(docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from .batch_relaxed import batch_relaxed_function
from .classifier import Classifier
from .defense import Defense
from .errors import InputError
from .params import BUDGET_UI, Budget

# progress(batches done, batches in all, label): label names the epoch, the running loss and,
# once an epoch is validated, its clean and adversarial validation accuracy.
TrainingProgress = Callable[[int, int, str], None]

_training_loop: Callable | None = None  # set by use_training_loop (the lab's loop)


def use_training_loop(loop: Callable) -> None:
    """Make `loop(trainer, clf, train, val, **options)` what every Trainer.apply runs."""
    global _training_loop
    _training_loop = loop


class TrainerParams(BaseModel):
    """Parameters every trainer shares; a plugin subclasses this to add its own and set defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eps: Budget = Field(4 / 255, gt=0, le=1, json_schema_extra=BUDGET_UI,

    description="L-inf budget trained against, a fraction of the input range")
    epochs: int = Field(10, ge=1, le=10_000, description="Passes over the training split")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per training batch")
    learning_rate: float = Field(1e-3, gt=0, le=10, description="Adam learning rate")
    eps_warmup_epochs: float = Field(
        0, ge=0, le=10_000,
        description="Epochs over which eps grows linearly from 0 to its value (0: full eps at once)",
    )
    from_scratch: bool = Field(
        False,
        description="Start from freshly initialised weights instead of the given model's "
        "(fine-tuning reaches robustness in far fewer epochs)",
    )
    val_steps: int = Field(
        10, ge=1, le=1000, description="PGD steps of the validation attack (at the training eps)"
    )


@dataclass
class TrainingContext:
    """What a trainer's batch functions need: the model being trained, seen several ways."""

    clf: Classifier  # the copy being trained; clf.logits runs it in inference mode
    train_logits: Callable  # x -> logits in training mode (dropout on), for the loss
    input_gradient: Callable  # x, y -> (logits, d CE / dx): the inner attacks' model pass
    cache: dict = field(default_factory=dict)

    @classmethod
    def of(cls, clf: Classifier) -> "TrainingContext":
        """The context for training clf's model (also what a plugin's own tests can build)."""
        from .gradients import cross_entropy_pass

        # Dropout on for models whose output is the logits; logits recovered from before a
        # final softmax are computed in inference mode, as they always were here.
        train_logits = lambda x: clf.logits(x, training=clf.output_is_logits)  # noqa: E731
        return cls(clf, train_logits, cross_entropy_pass(clf, targeted=False))

    def once(self, name: str, build: Callable):
        """build() the first time `name` is asked for, then the same object (compiled helpers)."""
        if name not in self.cache:
            self.cache[name] = build()
        return self.cache[name]


class Trainer(Defense):
    """A defense that trains a new model. Subclasses implement `adversarial` (and maybe `loss`)."""

    needs_training_data = True
    Params = TrainerParams

    # ---- what a plugin declares (traced into the compiled training step) ----------------
    def adversarial(self, ctx: TrainingContext, x, y, eps, seed):
        """The batch to train on, from the clean batch (x, y); eps is a float32 scalar tensor
        (the warmed-up budget), seed an int64 (2,) tensor for stateless random ops."""
        raise NotImplementedError(f"{type(self).__name__} must implement adversarial()")

    def loss(self, ctx: TrainingContext, x, x_train, y):
        """The training objective on one batch (recorded for the weight gradient)."""
        import tensorflow as tf

        logits = ctx.train_logits(x_train)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )

    def learning_rate(self, total_steps: int):
        """Adam's learning rate: a float, or a keras LearningRateSchedule over total_steps."""
        return self.params.learning_rate

    def compiled_step(self, ctx: TrainingContext, optimizer):
        """One compiled function per run: inner attack, forward, backward, update.
        step(x, y, eps, seed) -> the batch's loss."""
        import tensorflow as tf

        variables = ctx.clf.model.trainable_variables

        @batch_relaxed_function
        def step(x, y, eps, seed):
            x_train = tf.stop_gradient(self.adversarial(ctx, x, y, eps, seed))
            with tf.GradientTape() as tape:
                loss = self.loss(ctx, x, x_train, y)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, variables))
            return loss

        return step

    def apply(
        self,
        clf: Classifier,
        train=None,
        val=None,
        *,
        progress: TrainingProgress | None = None,
        checkpoint=None,
        seed: int = 0,
    ) -> Classifier:
        """Train a copy of `clf` on `train`; return the best epoch's model as a Classifier.

        val: the validation split (default: a seeded 10% of train held out). checkpoint: a file
        path; after every epoch the whole training state is written there atomically, and
        calling again with the same path, model, data, parameters and seed resumes after the
        last finished epoch. `self.history` and `self.best` follow the run's epochs.
        """
        if _training_loop is None:
            raise InputError(
                f"{self.name}: no training loop is installed; import egide (the package plugs "
                "in egide.lab.training.trainer_loop) before training"
            )
        return _training_loop(self, clf, train, val, progress=progress, checkpoint=checkpoint,
                              seed=seed)
