"""The model pass shared by gradient attacks (logits and the loss gradient, in a graph of its own),
and the plain PGD loop that trainers run inside their compiled training step.

Why a graph of its own: TensorFlow's oneDNN rewrite of the max-pool gradient only happens when
it meets the rewritten forward pool first, and inlined into an attack's while loop that order
varies between compilations — about half of them ran every max-pool gradient on the slow Eigen
kernel (a PGD step on a small CNN 1.5x slower; see benchmarks/README.md). A function marked
`_noinline` is optimised separately and got oneDNN every time measured, for ~1% call overhead.
A model with no gradient path to its input (a quantiser) gives zeros, not None: the attack then
stands still instead of failing, and the evaluation's sanity checks flag the masking.
"""

import tensorflow as tf

from .norms import projected_gradient_step
from .randomness import in_ball


def cross_entropy_pass(clf, targeted: bool):
    """Compiled fn(x, labels) -> (logits, d objective / dx), objective = CE (or -CE if targeted)."""

    @tf.function(experimental_attributes={"_noinline": True}, reduce_retracing=True)
    def model_pass(x, labels):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            logits = tf.cast(clf.logits(x), tf.float32)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            objective = -loss if targeted else loss
        grad = tape.gradient(objective, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return logits, grad

    return model_pass


def objective_pass(clf, objective, samples: int = 1):
    """Compiled fn(x, labels, targets) -> (logits, objective per sample, d sum(objective) / dx),
    for any objective(logits, labels, targets) -> (B,) that an attack maximises, in a graph of
    its own like `cross_entropy_pass`. samples > 1 averages the gradient over that many passes
    (EOT, for a randomized model); logits and objective are those of the last pass."""

    @tf.function(experimental_attributes={"_noinline": True}, reduce_retracing=True)
    def model_pass(x, labels, targets):
        grad = tf.zeros_like(x)
        for _ in range(samples):  # unrolled: a handful of draws
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                logits = tf.cast(clf.logits(x), tf.float32)
                value = objective(logits, labels, targets)
            grad += tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return logits, value, grad / samples

    return model_pass


def projected_gradient_ascent(input_gradient, x, y, eps, steps: int, step_size, seed, clip,
                              norm: str = "inf", random_start: bool = True):
    """PGD inside a graph (Madry et al.): `steps` projected-gradient steps on the loss whose
    input gradient `input_gradient(x, y) -> (logits, grad)` gives, from a uniform random point
    of the eps-ball when random_start. eps and step_size may be tensors; seed is int64 (2,)."""
    lo, hi = clip
    x_adv = x
    if random_start:
        x_adv = tf.clip_by_value(x + in_ball(tf.shape(x), eps, norm, seed), lo, hi)

    def step(t, x_adv):
        _, grad = input_gradient(x_adv, y)
        return t + 1, projected_gradient_step(x_adv, x, grad, step_size, eps, norm, lo, hi)

    _, x_adv = tf.while_loop(lambda t, _: t < steps, step, (tf.constant(0), x_adv))
    return x_adv
