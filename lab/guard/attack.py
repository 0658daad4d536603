"""The detector-aware attack: change the label *and* stay under the detector's threshold.

An attacker who knows a guard (a classifier and a fitted detector) does not stop at fooling the
classifier: the example must also pass the detector. Carlini & Wagner (2017) broke ten detectors
this way, and Bryniarski et al. (2022, "Evading adversarial example detection defenses with
orthogonal projected gradient descent") gave the two update rules used here. With the class
margin m(x) = z_y - max_{j != y} z_j (below 0: misclassified) and the detector margin
d(x) = score(x) - threshold (above 0: flagged), each of `steps` projected steps moves every image
on one of the two constraints:

- "selective": while the image is classified correctly, descend m; once it is misclassified,
  descend d;
- "orthogonal" (the default, the stronger on the demo): the same choice, but each gradient first
  loses its component along the other one, so that fixing one constraint does not undo the other.

An image that is misclassified and unflagged at some step is kept as it is then (success is
judged on the detector's exact score: `differentiable_score` has the same values as `score`).
Gradients of the score come from the detector's `differentiable_score` (exact, or the BPDA
approximation it declares). A detector without one is attacked through a `surrogate` detector
that has one; then success inside the loop is the surrogate's, and the caller judges the examples
on the real detector.

Cost: per step, one forward and backward pass of the model and one of the detector's score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, Field

from egide.core.classifier import Classifier
from egide.core.detector import Detector
from egide.core.errors import InputError

Mode = Literal["orthogonal", "selective"]


class GuardAttackParams(BaseModel, extra="forbid", frozen=True):
    eps: float = Field(8 / 255, gt=0, le=1e3, description="Perturbation budget, a fraction of the input range")
    norm: Literal["inf", "2"] = Field("inf", description="Norm of the budget")
    steps: int = Field(50, ge=1, le=100_000, description="Projected gradient steps per restart")
    restarts: int = Field(1, ge=1, le=100, description="Runs from random starts; the first success counts")
    step_size: float | None = Field(None, gt=0, le=1e3, description="Step size; empty: 2.5 * eps / steps")
    mode: Mode = Field("orthogonal", description="Update rule (Bryniarski et al. 2022)")
    random_start: bool = Field(True, description="Start from a uniformly random point of the eps-ball")


@dataclass
class GuardAttackResult:
    x_adv: np.ndarray
    y: np.ndarray
    y_pred_adv: np.ndarray  # the classifier's labels on x_adv
    evaded: np.ndarray  # misclassified and under the threshold of the detector attacked (bool)
    seconds: float
    params: dict
    through: str  # how the detector's gradient was had: its score_gradient, or the surrogate


class GuardAttack:
    """`GuardAttack(eps=..., steps=...).run(clf, det, x, y)`: detector-aware PGD."""

    def __init__(self, **params):
        self.params = GuardAttackParams(**params)

    @property
    def step_size(self) -> float:
        p = self.params
        return p.step_size if p.step_size is not None else 2.5 * p.eps / p.steps

    def run(self, clf: Classifier, det: Detector, x, y, *, seed: int = 0, batch_size: int | None = None,
            surrogate: Detector | None = None, progress: Callable[[int, int], None] | None = None,
            first_batch: int = 0) -> GuardAttackResult:
        """Attack x in batches; image j starts from the draws of (seed, j) (egide.core.randomness), so a shard
        of a larger run (its first batch's index, the same batch_size) reproduces it exactly."""
        import tensorflow as tf

        x = clf.check_inputs(x)
        y = clf.check_labels(y, len(x))
        attacked = self.attacked(det, surrogate)
        batch_size = batch_size or max(1, clf.batch_size_for(len(x)) // 2)
        threshold = float(attacked.threshold)
        # Kept by the detector, per classifier, parameters and threshold: compiled once. The
        # score function is built here, outside any trace, so its constants stay constants.
        attack = attacked.compiled(
            clf, lambda: self._attack_function(clf, attacked.differentiable_score(clf), threshold),
            f"guard-attack {self.params.model_dump_json()} {threshold!r}")
        n = len(x)
        x_adv, evaded = np.empty_like(x), np.zeros(n, bool)
        started = time.perf_counter()
        if progress:
            progress(0, n)
        for index, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            adv, ok = attack(tf.constant(x[start:stop]), tf.constant(y[start:stop]),
                             tf.constant([seed, first_batch * batch_size + start], tf.int64))
            x_adv[start:stop], evaded[start:stop] = adv.numpy(), ok.numpy()
            if progress:
                progress(stop, n)
        return self.result(clf, det, surrogate, x_adv, y, evaded, time.perf_counter() - started)

    def attacked(self, det: Detector, surrogate: Detector | None) -> Detector:
        """The detector whose gradient the attack follows: `det`, else the surrogate."""
        attacked = det if det.score_gradient is not None else surrogate
        if attacked is None:
            raise InputError(f"{det.name} has no differentiable score: give a surrogate detector "
                             "that has one (run(..., surrogate=fitted_detector))")
        return attacked

    def result(self, clf, det, surrogate, x_adv, y, evaded, seconds: float) -> GuardAttackResult:
        """The result of examples made (here, or batch by batch on workers)."""
        through = (f"{det.name}: {det.score_gradient}" if self.attacked(det, surrogate) is det else
                   f"surrogate {surrogate.name} ({det.name} has no differentiable score)")
        return GuardAttackResult(
            x_adv=x_adv, y=y, y_pred_adv=clf.predict(x_adv), evaded=evaded, seconds=seconds,
            params=self.params.model_dump(), through=through)

    def _attack_function(self, clf: Classifier, score, threshold: float):
        import tensorflow as tf

        from egide.core import randomness
        from egide.core.norms import clip_to_ball, per_sample, projected_gradient_step, sample_axes

        p = self.params
        lo, hi = clf.clip
        eps, alpha, norm, orthogonal = p.eps, self.step_size, p.norm, p.mode == "orthogonal"
        classes = clf.num_classes

        def margins(x, y):
            """(class margin m, detector margin d, dm/dx, dd/dx) for a batch."""
            with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
                tape.watch(x)
                logits = tf.cast(clf.logits(x), tf.float32)
                true = tf.reduce_sum(logits * tf.one_hot(y, classes), axis=1)
                others = tf.reduce_max(logits - 1e9 * tf.one_hot(y, classes), axis=1)
                m = true - others
                d = tf.cast(score(x), tf.float32) - threshold
                m_sum, d_sum = tf.reduce_sum(m), tf.reduce_sum(d)
            zero = tf.UnconnectedGradients.ZERO
            gm = tape.gradient(m_sum, x, unconnected_gradients=zero)
            gd = tape.gradient(d_sum, x, unconnected_gradients=zero)
            del tape
            return m, d, gm, gd

        def without(g, other):
            """g minus its component along `other`, per image."""
            dot = tf.reduce_sum(g * other, axis=sample_axes(g), keepdims=True)
            sq = tf.reduce_sum(other * other, axis=sample_axes(other), keepdims=True)
            return g - dot / tf.maximum(sq, 1e-30) * other

        def one_restart(x0, y, seed, found, best):
            x = x0
            if p.random_start:
                x = clip_to_ball(x0 + randomness.in_ball(tf.shape(x0), eps, norm, seed), x0, eps, norm, lo, hi)

            def step(t, x, found, best):
                m, d, gm, gd = margins(x, y)
                fooled = m < 0
                success = fooled & (d <= 0)
                newly = success & ~found
                best = tf.where(per_sample(newly, x), x, best)
                found = found | success
                if orthogonal:
                    gm, gd = without(gm, gd), without(gd, gm)
                descend = tf.where(per_sample(fooled, gd), gd, gm)
                moved = projected_gradient_step(x, x0, -descend, alpha, eps, norm, lo, hi)
                x = tf.where(per_sample(found, x), x, moved)  # a success stays as it is
                return t + 1, x, found, best

            _, x, found, best = tf.while_loop(
                lambda t, x, found, best: (t < p.steps) & ~tf.reduce_all(found), step,
                (tf.constant(0), x, found, best))
            m, d, _, _ = margins(x, y)  # the last step's point is judged too
            success = (m < 0) & (d <= 0)
            best = tf.where(per_sample(success & ~found, x), x, best)
            # Images never successful keep this restart's last point (or an earlier restart's).
            last = tf.where(per_sample(found, x) | per_sample(success, x), best, x)
            return found | success, last

        def attack(x0, y, seed):
            found = tf.zeros(tf.shape(y), tf.bool)
            best = x0
            for r in range(p.restarts):  # unrolled: a handful of restarts
                restart_seed = randomness.draw(seed, r)
                found, best = one_restart(x0, y, restart_seed, found, best)
            return best, found

        return attack
