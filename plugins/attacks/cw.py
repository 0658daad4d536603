"""C&W L2 — Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks" (S&P 2017).

A minimum-norm attack. Per image it minimises

    ||x' - x||_2^2 + c * f(x'),    f(x') = max(max_{i != t} Z_i - Z_t, -kappa)   (targeted)
                                   f(x') = max(Z_y - max_{i != y} Z_i, -kappa)   (untargeted)

over logits Z, in the change of variables x' = lo + (hi - lo) * (tanh(w) + 1) / 2 that keeps
x' inside the classifier's range without clipping. Adam runs on w for `steps` iterations;
a per-image binary search over `binary_search_steps` rounds tunes the constant c: an image
broken in a round lowers its upper bound to c and bisects; an image not broken raises its
lower bound to c and bisects if an upper bound exists, else multiplies c by 10. Only images
the round failed on have c raised.

Bookkeeping. Every iterate of every round that is adversarial with margin kappa (Z_t beats
every other logit by more than kappa, or some other logit beats Z_y by more than kappa) is a
candidate; each image keeps its smallest-L2 candidate across all rounds. An image never broken
is returned unchanged (so it counts as a failure). To cost one forward+backward pass per
iteration, the bookkeeping reuses the logits of the gradient's forward pass: it judges the
iterate *before* each Adam step; the round's last iterate is judged by one extra forward pass.

Early abort (`abort_early`). A round runs in chunks of max(1, steps // 10) iterations. After
each chunk every image's objective (at the chunk's last iterate) is compared with its value
after the previous chunk; an image the round has already broken that has not improved by at
least 0.01% of that value's magnitude (the paper's `loss > 0.9999 * previous`, made safe for
negative objectives, which kappa > 0 allows) is frozen for the rest of the round, and the round
ends as soon as every image of the batch is frozen. An image not yet broken is never frozen:
a slow start is not a reason to give up on it (stopping it early cost images the TF toolbox's
C&W breaks at the same settings). Freezing per image (rather than on the summed loss) makes each
image's result independent of the other images in its batch.

Speed: the whole attack on a batch (all rounds, all iterations, Adam included) is a single
compiled `tf.function` of nested `tf.while_loop`s (rounds > chunks > iterations); nothing
returns to Python until the batch is done. Each iteration is one forward+backward pass of the
model (a non-inlined inner function, see `model_pass`): the tape covers only the model, and
the gradients of the distance, of the margin loss and of the tanh mapping, which are simple,
are written out. Nothing is random: the seed is accepted and unused.

After `run()`, the attack's `search_constants` holds, per image of that run, the constant c
the binary search ended with (after its last update): below `initial_const` for images broken
in the first round, above it for the others, and `initial_const * 10**binary_search_steps`
(capped at 1e10) for images broken in no round.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, hookimpl
from egide.core.norms import per_sample, sample_axes

_SHRINK = 0.999999  # keeps arctanh of a pixel at the range's edge finite
_MAX_CONST = 1e10  # c is never raised above this (float32 headroom for c * f)
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_MIN_IMPROVEMENT = 1e-4  # abort_early: relative improvement an image must make between checks


class CarliniWagnerL2(Attack):
    """Carlini & Wagner L2: the smallest L2 perturbation that fools the model, found by
    optimisation in tanh space with a per-image binary search over the trade-off constant."""

    name = "cw"
    title = "Carlini & Wagner (L2)"
    budget = "minimal"
    minimizes = "2"
    evaluation = {"binary_search_steps": 5, "steps": 100}

    class Params(BaseModel, extra="forbid", frozen=True):
        confidence: float = Field(
            0.0,
            ge=0,
            le=1e4,
            description="Margin kappa, in logits, by which the adversarial class must win; "
            "larger values give stronger (and larger) perturbations",
        )
        initial_const: float = Field(
            1e-2,
            gt=0,
            le=1e6,
            description="Starting trade-off constant c between distance and misclassification; "
            "the binary search adjusts it per image",
        )
        binary_search_steps: int = Field(
            9, ge=1, le=30, description="Rounds of the binary search over the constant c"
        )
        steps: int = Field(
            100, ge=1, le=100_000, description="Adam iterations per binary-search round"
        )
        learning_rate: float = Field(
            1e-2, gt=0, le=10, description="Adam step size, in tanh space"
        )
        targeted: bool = Field(
            False, description="Aim at given target labels instead of away from the true ones"
        )
        abort_early: bool = Field(
            True,
            description="End a round for an image once its objective stops improving "
            "(checked every steps/10 iterations)",
        )

    #: Per image of the last run(): the constant c the binary search ended with.
    search_constants: np.ndarray | None = None

    @property
    def norm(self) -> str:
        return "2"

    def run(self, clf, x, y, **kwargs):
        """Attack.run, which also sets `search_constants` (one per image, in order)."""
        self.search_constants = None
        self._constants: list[np.ndarray] | None = []
        try:
            result = super().run(clf, x, y, **kwargs)
            self.search_constants = np.concatenate(self._constants)
        finally:
            self._constants = None
        return result

    def perturb(self, clf, x, y, target, seed):
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        x_adv, constants = attack(x, labels)
        if getattr(self, "_constants", None) is not None:
            self._constants.append(constants.numpy())
        return x_adv

    def _attack_function(self, clf):
        p = self.params
        lo, hi = clf.clip
        half_span = (hi - lo) / 2.0
        mid = lo + half_span
        num_classes = clf.num_classes
        kappa = float(p.confidence)
        rounds, steps = int(p.binary_search_steps), int(p.steps)
        # abort_early: rounds run in chunks of `period` iterations with a check after each.
        abort_early = p.abort_early
        period = max(1, steps // 10) if abort_early else steps
        chunks = -(-steps // period)
        # Adam's bias-corrected step size for t = 1..steps, computed once.
        t = np.arange(1, steps + 1, dtype=np.float64)
        adam_steps = tf.constant(
            p.learning_rate * np.sqrt(1.0 - _BETA2**t) / (1.0 - _BETA1**t), tf.float32
        )
        targeted = self.targeted

        # The model's forward+backward pass, as a function TensorFlow must not inline into the
        # loop. oneDNN rewrites a MaxPoolGrad only if it meets the rewritten forward pool first;
        # inlined into the lowered while loops (a graph with cycles) that order varies from one
        # compilation to the next, and about half of them ran every max-pool gradient on the
        # plain Eigen kernel (a whole C&W step on a small CNN ~1.5x slower). In a graph of its
        # own, 13 compilations out of 13 got oneDNN; the call costs about 1%.
        @tf.function(experimental_attributes={"_noinline": True}, reduce_retracing=True)
        def model_pass(x_adv, label_hot, const):
            """Margins of x_adv, and the gradient of const * f w.r.t. x_adv, from one pass."""
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x_adv)
                z = clf.logits(x_adv)
            is_label = label_hot > 0
            z_label = tf.reduce_sum(label_hot * z, axis=1)
            z_masked = tf.where(is_label, -np.inf, z)
            z_other = tf.reduce_max(z_masked, axis=1)
            # How far past the decision boundary x_adv is (> 0: adversarial);
            # f = max(-margin, -kappa), so d f/dz = -d margin/dz while margin < kappa, else 0.
            margin = z_label - z_other if targeted else z_other - z_label
            weight = tf.where(margin < kappa, const, 0.0)
            other_hot = tf.one_hot(tf.argmax(z_masked, axis=1), num_classes)
            down = other_hot - label_hot if targeted else label_hot - other_hot
            grad_z = weight[:, None] * down
            return margin, tape.gradient(z, x_adv, output_gradients=grad_z,
                                         unconnected_gradients=tf.UnconnectedGradients.ZERO)

        def attack(x, labels):
            batch = tf.shape(x)[0]
            label_hot = tf.one_hot(labels, num_classes)
            w_start = tf.atanh(tf.clip_by_value((x - mid) / half_span, -1.0, 1.0) * _SHRINK)
            inf = tf.fill([batch], np.float32(np.inf))
            nobody, everybody = tf.fill([batch], False), tf.fill([batch], True)

            def judge(w, broken, best_l2, best_adv):
                """Bookkeeping of an iterate from its logits alone (no gradient)."""
                x_adv = mid + half_span * tf.tanh(w)
                z = tf.cast(clf.logits(x_adv), tf.float32)
                z_label = tf.reduce_sum(label_hot * z, axis=1)
                z_other = tf.reduce_max(tf.where(label_hot > 0, -np.inf, z), axis=1)
                margin = z_label - z_other if targeted else z_other - z_label
                l2sq = tf.reduce_sum(tf.square(x_adv - x), axis=sample_axes(x))
                success = margin > kappa
                better = success & (l2sq < best_l2)
                return (broken | success, tf.where(better, l2sq, best_l2),
                        tf.where(per_sample(better, x_adv), x_adv, best_adv))

            def iteration(i, w, m, v, moving, const, loss, broken, best_l2, best_adv):
                """One Adam step on w; bookkeeping on the iterate before the step."""
                tanh_w = tf.tanh(w)
                x_adv = mid + half_span * tanh_w
                margin, grad_f = model_pass(x_adv, label_hot, const)
                diff = x_adv - x
                l2sq = tf.reduce_sum(tf.square(diff), axis=sample_axes(diff))
                if abort_early:  # the objective itself is only needed for the checks
                    loss = l2sq + const * tf.maximum(-margin, -kappa)

                success = margin > kappa
                broken = broken | success
                better = success & (l2sq < best_l2)
                best_l2 = tf.where(better, l2sq, best_l2)
                best_adv = tf.where(per_sample(better, x_adv), x_adv, best_adv)

                # Gradient of the objective w.r.t. w: d/dx ||x'-x||^2 = 2(x'-x), plus c * df/dx'
                # from the model pass, times dx'/dw = half_span * (1 - tanh^2 w).
                grad = (2.0 * diff + grad_f) * (half_span - half_span * tf.square(tanh_w))

                m = _BETA1 * m + (1.0 - _BETA1) * grad
                v = _BETA2 * v + (1.0 - _BETA2) * tf.square(grad)
                step = moving * adam_steps[i] if abort_early else adam_steps[i]
                w = w - step * m / (tf.sqrt(v) + _ADAM_EPS)
                return i + 1, w, m, v, moving, const, loss, broken, best_l2, best_adv

            def chunk(k, i, w, m, v, active, prev_loss, const, broken, best_l2, best_adv):
                """Up to `period` iterations; then freeze images whose objective stalled."""
                moving = per_sample(tf.cast(active, tf.float32), w)  # frozen: step 0
                stop = tf.minimum(i + period, steps)
                i, w, m, v, _, _, loss, broken, best_l2, best_adv = tf.while_loop(
                    lambda i, *_: i < stop,
                    iteration,
                    (i, w, m, v, moving, const, inf, broken, best_l2, best_adv),
                )
                # (No check after the first chunk: prev_loss is inf there, and inf - inf is NaN.)
                # Only an image this round has broken may stop: one still unbroken keeps going,
                # however slowly its objective falls, until the round's last iteration.
                stalled = tf.math.is_finite(prev_loss) & broken & (
                    loss > prev_loss - _MIN_IMPROVEMENT * tf.abs(prev_loss)
                )
                active = active & ~stalled
                return k + 1, i, w, m, v, active, loss, const, broken, best_l2, best_adv

            def search_round(r, const, lower, upper, best_l2, best_adv):
                """Adam from the clean image at constants `const`, then update the search."""
                zeros = tf.zeros_like(w_start)
                start = (
                    0, 0, w_start, zeros, zeros, everybody, inf, const, nobody, best_l2, best_adv
                )
                out = tf.while_loop(
                    lambda k, i, w, m, v, active, *_: (k < chunks) & tf.reduce_any(active),
                    chunk,
                    start,
                )
                w, broken, best_l2, best_adv = out[2], out[8], out[9], out[10]
                # The round's last Adam step was never judged (each iteration judges the iterate
                # before its step): one forward pass does it.
                broken, best_l2, best_adv = judge(w, broken, best_l2, best_adv)
                upper = tf.where(broken, tf.minimum(upper, const), upper)
                lower = tf.where(broken, lower, tf.maximum(lower, const))
                const = tf.where(
                    tf.math.is_finite(upper),
                    (lower + upper) / 2.0,
                    tf.minimum(const * 10.0, _MAX_CONST),
                )
                return r + 1, const, lower, upper, best_l2, best_adv

            c0 = tf.fill([batch], np.float32(p.initial_const))
            start = (0, c0, tf.zeros([batch]), inf, inf, x)  # r, c, lower, upper, best_l2, best
            out = tf.while_loop(lambda r, *_: r < rounds, search_round, start)
            return out[5], out[1]

        return attack


@hookimpl
def egide_register_attacks(register):
    register(CarliniWagnerL2)
