"""Typed results. Each records what produced it ({plugin, version, params, seed}) for replay."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def attack_success(y, y_pred, y_pred_adv, target=None) -> np.ndarray:
    """Per image: the attack succeeded. Only an image the model classified right before the attack
    can be broken by it (an image it already got wrong is counted apart, not as a success); then
    untargeted success is any other class, targeted success the target class."""
    correct = np.asarray(y_pred) == np.asarray(y)
    reached = np.asarray(y_pred_adv) == np.asarray(target) if target is not None else np.asarray(y_pred_adv) != y
    return correct & reached


@dataclass(frozen=True)
class AttackResult:
    """Adversarial examples and what they did, per sample."""

    x_adv: np.ndarray  # float32 NHWC, inside the classifier's range
    y: np.ndarray  # true labels
    y_pred: np.ndarray  # predictions on the clean images
    y_pred_adv: np.ndarray  # predictions on the adversarial images
    success: np.ndarray  # bool: classified right before, and misclassified (or as the target) after
    l2: np.ndarray  # per-sample L2 norm of the perturbation
    linf: np.ndarray  # per-sample L-inf norm of the perturbation
    seconds: float
    config: dict = field(default_factory=dict)  # {kind, plugin, version, params}
    seed: int | None = None
    batch_size: int | None = None
    target: np.ndarray | None = None
    l1: np.ndarray | None = None  # per-sample L1 norm of the perturbation

    def __len__(self) -> int:
        return len(self.x_adv)

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.y_pred == self.y))

    @property
    def robust_accuracy(self) -> float:
        return float(np.mean(self.y_pred_adv == self.y))

    @property
    def already_misclassified(self) -> int:
        """Images the model got wrong before any attack: not the attack's doing, not in its success."""
        return int(np.sum(self.y_pred != self.y))

    @property
    def success_rate(self) -> float:
        """The share of the images classified right before the attack that it broke (NaN if none was)."""
        correct = int(np.sum(self.y_pred == self.y))
        return float(np.sum(self.success)) / correct if correct else float("nan")

    def summary(self) -> dict:
        """The numbers a person or a script reads first (JSON-ready)."""
        n = len(self)
        return {
            "attack": self.config.get("plugin"),
            "version": self.config.get("version"),
            "params": self.config.get("params"),
            "seed": self.seed,
            "batch_size": self.batch_size,
            "targeted": self.target is not None,
            "images": n,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "already_misclassified": self.already_misclassified,
            "l2_mean": float(self.l2.mean()),
            "l2_max": float(self.l2.max()),
            "linf_mean": float(self.linf.mean()),
            "linf_max": float(self.linf.max()),
            **({} if self.l1 is None else {"l1_mean": float(self.l1.mean()), "l1_max": float(self.l1.max())}),
            "seconds": round(self.seconds, 4),
            "images_per_second": round(n / self.seconds, 2) if self.seconds > 0 else None,
        }

    def save(self, path: str | Path) -> Path:
        """Write x_adv, y, y_pred_adv (and the rest) to an .npz, the summary inside as JSON."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = ("x_adv", "y", "y_pred", "y_pred_adv", "success", "l2", "linf", "l1", "target")
        arrays = {name: getattr(self, name) for name in kept if getattr(self, name) is not None}
        arrays["summary"] = np.array(json.dumps(self.summary()))
        # Write beside the destination, then rename: a crash never leaves a half-written file.
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)
        return path
