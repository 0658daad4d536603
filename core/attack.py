"""Attack: the base class of attack plugins, and the batched run loop they all share.

A plugin implements `perturb(clf, x, y, target, seed)` for one batch of tensors and returns the
adversarial batch. `run` does the rest once, for everyone: input checks, streaming in batches,
per-batch seeds, progress, metrics and the typed result.
"""

from __future__ import annotations

import math
import time
from typing import Callable, ClassVar

import numpy as np

from .classifier import Classifier
from .errors import InputError, ParameterError
from .plugin import Plugin
from .results import AttackResult, attack_success

Progress = Callable[[int, int], None]  # (images done, images in all)


class Attack(Plugin):
    kind = "attack"
    # What the attack is, declared by each plugin and read by the evaluation (never its name):
    # "fixed": it looks for an adversarial example within a budget, its parameter `eps`, in the
    # norm `norm`; "minimal": it looks for the smallest perturbation, in the norm `minimizes`.
    budget: ClassVar[str] = "fixed"
    minimizes: ClassVar[str | None] = None  # "2" or "inf" (else its `norm` parameter), for minimal ones
    single_step: ClassVar[bool] = False  # one gradient step (FGSM): the floor iterative ones must beat
    iterative: ClassVar[bool] = False  # many gradient steps inside the eps-ball (PGD, BIM, MIM)
    # Parameters (besides eps) that run it at full strength: the sanity checks' unbounded run.
    full_strength: ClassVar[dict] = {}
    # Its parameters in the standard evaluation (`egide evaluate` without --attacks); None: not in it.
    evaluation: ClassVar[dict | None] = None

    @property
    def targeted(self) -> bool:
        return bool(getattr(self.params, "targeted", False))

    @property
    def norm(self) -> str:
        """The norm of the budget (fixed) or of the perturbation minimised (minimal)."""
        return self._norm_of(self.params)

    @classmethod
    def _norm_of(cls, params) -> str:
        minimal = cls.budget == "minimal" and cls.minimizes is not None
        return str(cls.minimizes if minimal else getattr(params, "norm", "inf"))

    @classmethod
    def check_declaration(cls) -> None:
        super().check_declaration()
        if cls.budget not in ("fixed", "minimal"):
            raise TypeError(f"{cls.__name__}.budget must be 'fixed' or 'minimal', got {cls.budget!r}")
        if cls.budget == "fixed" and "eps" not in cls.Params.model_fields:
            raise TypeError(f"{cls.__name__} has a fixed budget but no `eps` parameter")
        if cls.budget == "minimal" and cls.minimizes not in ("2", "inf") and "norm" not in cls.Params.model_fields:
            raise TypeError(f"{cls.__name__} is minimal-perturbation: declare minimizes = '2' or 'inf' "
                            "(or a `norm` parameter)")

    @classmethod
    def validate_params(cls, params):
        """The plugin's model, then the rule every budget shares: an L-inf eps is at most 1, the
        whole range (a larger one is a unit mistake, e.g. 8 for 8/255)."""
        validated = super().validate_params(params)
        eps = getattr(validated, "eps", None)
        if eps is not None and cls._norm_of(validated) == "inf" and eps > 1:
            rule = ("an L-inf budget is at most 1, the whole input range; budgets are fractions of it "
                    "(write 8/255, not 8)")
            raise ParameterError(f"{cls.kind} '{cls.name}': invalid parameters\n  eps: {rule} (got {eps!r})",
                                 [{"field": "eps", "rule": rule, "type": "less_than_equal", "input": eps}])
        return validated

    def perturb(self, clf: Classifier, x, y, target, seed):
        """Return adversarial versions of one batch.

        x: float32 tensor (B, H, W, C), or (B, D, H, W, C) for volumes; y: int64 true labels;
        target: int64 target labels, or None when untargeted; seed: int64 tensor [run seed, index in the run of the batch's first
        image]: draw through `egide.core.randomness`, so each image's randomness is its own,
        whatever the batch size.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement perturb()")

    def run(
        self,
        clf: Classifier,
        x,
        y,
        *,
        target=None,
        batch_size: int | None = None,
        seed: int = 0,
        progress: Progress | None = None,
        first_batch: int = 0,
    ) -> AttackResult:
        """Attack x in batches of `batch_size`. Image j draws its randomness from (seed, j)
        (`egide.core.randomness`), so the result does not depend on the batch size; a shard of a
        larger run (first_batch = its first batch's index, the same batch_size) numbers its images
        as the whole run does. A randomized defense draws per image as well (`ImageNoise`)."""
        import tensorflow as tf

        if not isinstance(clf, Classifier):
            raise InputError(
                f"{self.name}: expected an egide.Classifier, got {type(clf).__name__}; wrap a "
                "Keras model with egide.Classifier.from_keras(model, clip=(0.0, 1.0))"
            )
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"{self.name}: batch_size must be a positive integer, got {batch_size!r}")
        x = clf.check_inputs(x)
        if batch_size is None:  # chosen from the model's memory footprint
            batch_size = clf.batch_size_for(len(x))
        y = clf.check_labels(y, len(x))
        target = self._check_target(clf, target, y)
        self._check_budget(clf)
        self.check_rank(clf)

        n = len(x)
        x_adv = np.empty_like(x)
        y_pred = np.empty(n, np.int64)
        y_pred_adv = np.empty(n, np.int64)
        l2 = np.empty(n, np.float32)
        linf = np.empty(n, np.float32)
        l1 = np.empty(n, np.float32)
        started = time.perf_counter()
        if progress:
            progress(0, n)
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            xb = tf.constant(x[start:stop])
            yb = tf.constant(y[start:stop])
            tb = None if target is None else tf.constant(target[start:stop])
            first_image = first_batch * batch_size + start  # this batch's first image, in the run
            clf.reseed(seed, first_image)  # a randomized defense's draws, per image too
            adv = self.perturb(clf, xb, yb, tb, tf.constant([seed, first_image], dtype=tf.int64))
            adv, pred, pred_adv = self.compiled(clf, lambda: _finish_function(clf), "finish")(xb, adv)
            adv = adv.numpy()
            x_adv[start:stop] = adv
            y_pred[start:stop] = pred.numpy()
            y_pred_adv[start:stop] = pred_adv.numpy()
            # Norms per batch: a whole-dataset delta would make memory grow with the data.
            delta = (adv - x[start:stop]).reshape(stop - start, -1)
            l2[start:stop] = np.sqrt(np.einsum("ij,ij->i", delta, delta, dtype=np.float64))
            linf[start:stop] = np.abs(delta).max(axis=1)
            l1[start:stop] = np.abs(delta).sum(axis=1, dtype=np.float64)
            if progress:
                progress(stop, n)
        seconds = time.perf_counter() - started

        success = attack_success(y, y_pred, y_pred_adv, target)
        return AttackResult(
            x_adv=x_adv,
            y=y,
            y_pred=y_pred,
            y_pred_adv=y_pred_adv,
            success=success,
            l2=l2,
            linf=linf,
            l1=l1,
            seconds=seconds,
            config=self.config(),
            seed=seed,
            batch_size=batch_size,
            target=target,
        )

    # ---- checks shared by attacks ------------------------------------------------------
    def _check_target(self, clf: Classifier, target, y: np.ndarray):
        if target is None:
            if self.targeted:
                raise InputError(
                    f"{self.name}: targeted=True needs target labels: run(clf, x, y, target=t)"
                )
            return None
        if not self.targeted:
            raise InputError(
                f"{self.name}: target labels were given to an untargeted attack; create it "
                "with targeted=True to aim at them"
            )
        return clf.check_labels(target, len(y), what="target labels")

    def _check_budget(self, clf: Classifier) -> None:
        """An eps larger than the whole input range is a unit mistake, not a budget."""
        eps = getattr(self.params, "eps", None)
        if eps is None:
            return
        lo, hi = clf.clip
        span = hi - lo
        dims = math.prod(clf.input_shape)
        limit = {"inf": span, "2": span * math.sqrt(dims), "1": span * dims}[self.norm]
        if eps > limit:
            raise ParameterError(
                f"{self.name}: eps={eps:g} exceeds the input range of the classifier "
                f"({lo:g}..{hi:g}, largest possible L{self.norm} distance {limit:.4g}); "
                "epsilons are fractions of the input range, e.g. 8/255 = 0.0314"
            )


def _finish_function(clf: Classifier):
    """One compiled call per batch: clip into range, and predict clean and adversarial."""
    import tensorflow as tf

    lo, hi = clf.clip

    def finish(x, adv):
        adv = tf.clip_by_value(tf.cast(adv, tf.float32), lo, hi)
        # Two calls, not one on both: a randomized defense draws for the batch's images each time.
        return adv, tf.argmax(clf.logits(x), axis=1), tf.argmax(clf.logits(adv), axis=1)

    return finish
