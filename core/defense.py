"""Defense: the base class of defense plugins.

A defense turns a classifier into a defended classifier. Preprocessors wrap the classifier's
inputs; trainers fit a new model (`apply(clf, train=..., val=...)`). Either way the result is a
`Classifier`, so every attack and detector works on it unchanged.
"""

from __future__ import annotations

from .classifier import Classifier
from .plugin import Plugin


class Defense(Plugin):
    kind = "defense"
    needs_training_data = False  # True for trainers: apply() then needs `train`

    def apply(self, clf: Classifier, train=None, val=None) -> Classifier:
        """Return the defended classifier."""
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")
