"""Training: a classifier from scratch (`classifier.py`: what `egide train` runs), the loop every
trainer defense shares (`trainer_loop.py`: what `Trainer.apply` runs) and the atomic checkpoints
that let a stopped run resume (`checkpoint.py`)."""

from .classifier import TrainingResult, save_model, train_classifier

__all__ = ["TrainingResult", "save_model", "train_classifier"]
