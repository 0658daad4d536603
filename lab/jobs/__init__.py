"""The lab's jobs, one function each, shared by every face: `run_attack` (an attack, optionally on
a preprocessing defense) and `train_defended` (a trainer defense). The command line and the server
both validate one config and call the same function, so their defaults and results cannot drift
apart; each face only loads the model and data its own way and presents the outcome. (The
evaluation's function is `egide.lab.evaluation.pipeline.evaluate`.)"""

from .attack import AttackConfig, AttackOutcome, DefenseChoice, run_attack
from .defend import DefendConfig, DefendOutcome, train_defended, trainer_of

__all__ = ["AttackConfig", "AttackOutcome", "DefendConfig", "DefendOutcome", "DefenseChoice",
           "run_attack", "train_defended", "trainer_of"]
