"""APGD — Auto-PGD (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML 2020).

PGD without a step size to tune. Each run starts from a random point on the eps-sphere
(x + eps * u / ||u||, u uniform in [-1, 1] for L-inf, Gaussian for L2) and takes `steps`
iterations with momentum:

    z        = P(x_k + eta * dir(grad f(x_k)))
    x_{k+1}  = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))     alpha = 1 first, then 0.75

where P projects onto the eps-ball and the input range, dir is sign (L-inf) or grad/||grad||_2
(L2), and eta starts at 2 eps. At checkpoints — after 0.22 N iterations, then at intervals that
shrink by 0.03 N down to 0.06 N — the step size of a sample is halved, and the sample restarts
from its best point so far, if either
  1. the objective rose in at most rho = 75% of the iterations since the last checkpoint, or
  2. its step size was not halved at the last checkpoint and its best objective did not rise since.

Objectives (maximised): `ce`, the cross-entropy; `dlr`, the Difference of Logits Ratio
-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), invariant to shifting and scaling the logits (needs 3
classes); `dlr-targeted`, -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) (needs 4 classes), run once
per target t among the `target_classes` highest clean logits after the top one (AutoAttack's
APGD-T); `target_order="linear"` orders those targets by MALT's estimate instead (Melamed, Yehudai
& Shamir, NeurIPS 2024): the distance to each class's boundary in the model's linear approximation
at the clean image, so fewer targets find what the logit order needs many for. With `targeted=True` the attack aims at given target labels instead (ce: -CE of the
target; dlr and dlr-targeted: the targeted DLR towards it).

Restarts (and targets) run one after another, each only on the samples no earlier run broke, as
in the reference; a sample keeps its first adversarial example, and a sample no run breaks keeps
its highest-objective point. Already misclassified samples are not attacked. `eot_samples` > 1
averages each gradient over that many passes, for randomized models. With a DLR loss,
`restart_within` sends a target's restarts only to the samples its first run brought within that
margin of the boundary (DLR above -margin): the DLR is a margin in units of the logits' own spread,
so one threshold means the same on any model, and the points a restart turns are those near it.

Where we follow the paper rather than the reference code: condition 1 counts the rises of the
objective over the iterations since the last checkpoint starting from the start point's value
(the reference compares the first one against a zero-initialised buffer).

Cost: one compiled tf.function per classifier runs every run; each run costs at most `steps` + 1
forward+backward passes per sample (the start point's gradient, then one per iteration), and the
whole attack one more forward pass for the clean predictions. A sample leaves its run once it is
broken (the L-inf/L2 runs): its steps, step sizes and checkpoints are its own, so the others'
results do not change, and a run costs what its unbroken samples need (about half on the demo).
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf
from pydantic import BaseModel, Field

from egide.core import Attack, InputError, hookimpl, randomness
from egide.core.gradients import objective_pass
from egide.core.norms import clip_to_ball, per_sample, per_sample_l2, sample_axes, steepest_direction
from egide.core.params import Budget, NormWithL1
from egide.plugins.attacks._apgd_l1 import l1_run
from egide.plugins.attacks._params import eps_field, norm_field, targeted_field
from egide.plugins.attacks._shrinking_batch import loop_invariants, rows_of, where_true, write_rows

FIRST_CHECKPOINT = 0.22  # share of the iterations before the first checkpoint
CHECKPOINT_DECAY = 0.03  # each later interval is shorter by this share of the iterations
SHORTEST_INTERVAL = 0.06  # ... down to this share
MALT_POOL = 20  # classes, by clean logit, whose boundaries MALT's targeting compares
MOMENTUM = 0.75  # alpha of the update, after the first iteration
_TINY = 1e-12


class APGD(Attack):
    """Step-size-free PGD with momentum, checkpoints and restarts from the best point."""

    name = "apgd"
    title = "Auto-PGD (APGD)"
    iterative = True
    full_strength = {"steps": 100}

    class Params(BaseModel, extra="forbid", frozen=True):
        eps: Budget = eps_field()
        norm: NormWithL1 = norm_field("Norm of the budget: L-inf, L2 or L1 (l1-APGD, sparse steps)")
        steps: int = Field(100, ge=1, le=100_000, description="Iterations per run (N)")
        restarts: int = Field(
            1, ge=1, le=1000, description="Runs from random starts, each on the samples still unbroken"
        )
        loss: Literal["ce", "dlr", "dlr-targeted"] = Field(
            "ce",
            description="Objective: cross-entropy, Difference of Logits Ratio (3+ classes), or "
            "targeted DLR over the top classes (4+ classes; AutoAttack's APGD-T)",
        )
        target_classes: int = Field(
            9, ge=1, le=1000,
            description="With dlr-targeted: how many of the other classes to aim at, in `target_order`",
        )
        target_order: Literal["logits", "linear"] = Field(
            "logits",
            description="With dlr-targeted: aim first at the classes with the highest clean logits "
            "(AutoAttack's APGD-T), or at those whose boundary is nearest in the model's linear "
            "approximation at the image (MALT, Melamed, Yehudai & Shamir 2024)",
        )
        rho: float = Field(
            0.75, gt=0, le=1,
            description="Checkpoint condition: halve the step if the objective rose in at most this "
            "share of the iterations since the last checkpoint",
        )
        eot_samples: int = Field(
            1, ge=1, le=100, description="Gradients averaged per step (EOT, for randomized models)"
        )
        restart_within: float | None = Field(
            None, gt=0, le=10,
            description="With a DLR loss: a restart after a target's (or the attack's) first run goes "
            "only to the samples whose best DLR value in that run came within this margin of the "
            "boundary (above -margin; the DLR is 0 where the class changes); none: to every sample "
            "still unbroken")
        eps_schedule: bool = Field(
            False, description="L1: 30% of the iterations at 3 eps, 30% at 2 eps, 40% at eps (AutoAttack's "
            "L1 protocol); only points within eps count")
        stage_discard: bool = Field(
            False, description="With eps_schedule: a sample that no point of the 2 eps stage broke "
            "leaves the run there, unbroken at its clean image, and skips the last stage (Adaptive "
            "Auto Attack's discarding of hopeless points, at the schedule's stage end)")
        targeted: bool = targeted_field()

    def perturb(self, clf, x, y, target, seed):
        p = self.params
        if p.restart_within is not None and p.loss == "ce":
            raise InputError("apgd: restart_within measures the distance to the boundary in DLR units; "
                             "use loss='dlr' or 'dlr-targeted', or leave restart_within unset")
        if p.stage_discard and not (p.norm == "1" and p.eps_schedule):
            raise InputError("apgd: stage_discard works on the stages of the L1 eps schedule; set norm='1' "
                             "and eps_schedule=true, or leave stage_discard off")
        need = {"ce": 2, "dlr": 3, "dlr-targeted": 4}[p.loss]
        if clf.num_classes < need:
            raise InputError(
                f"apgd: loss '{p.loss}' needs at least {need} classes and {clf.name} has "
                f"{clf.num_classes}; use loss='ce'" + (" or 'dlr'" if clf.num_classes >= 3 else "")
            )
        labels = y if target is None else target
        attack = self.compiled(clf, lambda: self._attack_function(clf), autograph=False)
        return attack(x, y, labels, seed)

    def runs(self, num_classes: int) -> int:
        """How many runs the attack makes: restarts, times the targets of dlr-targeted."""
        p = self.params
        per_target = p.restarts
        if p.loss == "dlr-targeted" and not p.targeted:
            return per_target * min(p.target_classes, num_classes - 1)
        return per_target

    def trace(self, clf, x, y, seed: int = 0) -> dict:
        """One untargeted run on (x, y), logged: `objective` and `step_size` per iteration
        (row 0: the start; row i: after iteration i and its checkpoint), for tests and for
        anyone checking the schedule. Returns numpy arrays (steps + 1, n)."""
        x = clf.check_inputs(x)
        y = tf.constant(clf.check_labels(y, len(x)))
        if self.params.norm == "1":
            raise InputError("apgd: trace() follows the L-inf/L2 step-size schedule; L1 runs adapt sparsity instead")
        run = self.compiled(clf, lambda: self._attack_function(clf, record=True), "trace", autograph=False)
        _, _, _, values, etas = run(tf.constant(x), y, y, tf.constant([seed, 0], tf.int64))
        return {"objective": values.numpy(), "step_size": etas.numpy()}

    # ---- the algorithm ----------------------------------------------------------------------
    def _attack_function(self, clf, record: bool = False):
        p = self.params
        eps, norm, steps, rho = p.eps, p.norm, p.steps, p.rho
        lo, hi = clf.clip
        targeted_user = p.targeted
        aim_at_top = p.loss == "dlr-targeted" and not targeted_user
        runs = self.runs(clf.num_classes)
        first = max(int(FIRST_CHECKPOINT * steps), 1)
        decay = max(int(CHECKPOINT_DECAY * steps), 1)
        shortest = max(int(SHORTEST_INTERVAL * steps), 1)
        model_pass = objective_pass(clf, _objective(p.loss, targeted_user), p.eot_samples)

        def succeeded(logits, y, goal):
            pred = tf.argmax(logits, axis=1, output_type=y.dtype)
            return tf.equal(pred, goal) if targeted_user else tf.not_equal(pred, y)

        def step_towards(x_k, x0, grad, eta):
            return clip_to_ball(x_k + eta * steepest_direction(grad, norm), x0, eps, norm, lo, hi)

        def one_run(x0, y, goal, seed, rows=None):
            """APGD on the samples given (x0 its clean images; rows: their places in the batch,
            for their random starts); returns (first adversarial or best point, broken, best
            objective). A sample leaves the loop once broken: every sample's steps, step sizes and
            checkpoints are its own, so the others' results do not change, and the work shrinks
            as the points fall (record=True keeps every sample, to log the whole schedule)."""
            n = tf.shape(x0)[0]
            x_k = clip_to_ball(x0 + eps * _random_direction(tf.shape(x0), norm, seed, rows), x0, eps, norm, lo, hi)
            logits, value, grad = model_pass(x_k, y, goal)
            broken = succeeded(logits, y, goal)
            # What each sample ends with, written as it leaves: its first adversarial point (the
            # start, for those broken from it), else its best point; and its best objective.
            out = dict(x=x_k, broken=broken, best=value)
            eta = per_sample(tf.fill([n], tf.constant(2.0 * eps, tf.float32)), x0)
            active = dict(pos=tf.range(n), x0=x0, y=y, goal=goal, x_k=x_k, x_prev=x_k, grad=grad, eta=eta,
                          x_best=x_k, best=value, grad_best=grad, broken=broken, last=value,
                          rises=tf.zeros([n]), best_at_check=value, reduced_at_check=tf.ones([n], tf.bool))
            if not record:
                active = rows_of(active, tf.logical_not(broken))
            state = dict(i=tf.constant(0), since=tf.constant(0), interval=tf.constant(first), out=out, active=active)
            if record:
                state["history"] = tf.TensorArray(tf.float32, size=steps + 1).write(0, value)
                state["etas"] = tf.TensorArray(tf.float32, size=steps + 1).write(0, eta[:, 0, 0, 0])

            def iteration(s):
                i, a = s["i"], s["active"]
                alpha = tf.where(i > 0, MOMENTUM, 1.0)
                z = step_towards(a["x_k"], a["x0"], a["grad"], a["eta"])
                x_next = clip_to_ball(a["x_k"] + alpha * (z - a["x_k"]) + (1.0 - alpha) * (a["x_k"] - a["x_prev"]),
                                      a["x0"], eps, norm, lo, hi)
                logits, value, grad = model_pass(x_next, a["y"], a["goal"])
                hit = succeeded(logits, a["y"], a["goal"])
                first_hit = tf.logical_and(hit, tf.logical_not(a["broken"]))
                i4 = per_sample(value > a["best"], x_next)
                a = dict(a, x_k=x_next, x_prev=a["x_k"], grad=grad, broken=tf.logical_or(a["broken"], hit),
                         x_best=tf.where(i4, x_next, a["x_best"]), grad_best=tf.where(i4, grad, a["grad_best"]),
                         best=tf.maximum(value, a["best"]), last=value,
                         rises=a["rises"] + tf.cast(value > a["last"], tf.float32))
                since = s["since"] + 1
                a, since, interval = tf.cond(since >= s["interval"], lambda: checkpoint(a, since, s["interval"]),
                                             lambda: (a, since, s["interval"]))
                o = write_rows(s["out"], a["pos"], where_true(first_hit),
                               dict(x=x_next, broken=tf.ones_like(hit), best=a["best"]))
                nxt = dict(s, i=i + 1, since=since, interval=interval, out=o,
                           active=a if record else rows_of(a, tf.logical_not(hit)))
                if record:
                    nxt["history"] = s["history"].write(i + 1, value)
                    nxt["etas"] = s["etas"].write(i + 1, tf.reshape(a["eta"], [-1]))
                return nxt

            def checkpoint(a, since, interval):
                # Condition 1: the objective rose in at most rho of the iterations since the last
                # checkpoint (counted from that checkpoint's value on).
                oscillating = a["rises"] <= rho * tf.cast(since, tf.float32)
                # Condition 2: not halved last time, and no better point since.
                stalled = tf.logical_and(tf.logical_not(a["reduced_at_check"]), a["best_at_check"] >= a["best"])
                halve = tf.logical_or(oscillating, stalled)
                h4 = per_sample(halve, a["x_k"])
                a = dict(a, eta=tf.where(h4, a["eta"] / 2.0, a["eta"]), x_k=tf.where(h4, a["x_best"], a["x_k"]),
                         grad=tf.where(h4, a["grad_best"], a["grad"]), reduced_at_check=halve,
                         best_at_check=a["best"], rises=tf.zeros_like(a["rises"]))
                return a, tf.constant(0), tf.maximum(interval - decay, shortest)

            def more(s):
                return tf.logical_and(s["i"] < steps, tf.size(s["active"]["pos"]) > 0)

            final = tf.while_loop(more, lambda s: (iteration(s),), (state,),
                                  shape_invariants=(loop_invariants(state),))[0]
            a, o = final["active"], final["out"]
            # The samples still active end with their best point (record=True: the broken ones
            # were written as they fell).
            o = write_rows(o, a["pos"], where_true(tf.logical_not(a["broken"])), dict(x=a["x_best"], best=a["best"]))
            found = (o["x"], o["broken"], o["best"])
            if record:
                return (*found, final["history"].stack(), final["etas"].stack())
            return found

        if record:
            return lambda x0, y, goal, seed: one_run(x0, y, goal, seed)
        # L1 runs step sparsely and adapt sparsity, not the step schedule (_apgd_l1.py).
        run_once = (l1_run(model_pass, succeeded, eps, steps, lo, hi, p.eps_schedule, p.stage_discard)
                    if norm == "1" else one_run)

        def attack(x0, y, labels, seed):
            goal = labels  # the target labels, or y
            clean = tf.cast(clf.logits(x0), tf.float32)
            broken = succeeded(clean, y, goal)
            if aim_at_top:
                # The 2nd, 3rd, ... highest clean logits: the classes closest to taking over.
                ranked = tf.argsort(clean, axis=1, direction="DESCENDING", stable=True)
                ranked = tf.cast(ranked, y.dtype)
                if p.target_order == "linear":
                    ranked = _nearest_boundaries_first(clf, x0, y, ranked, norm, min(clf.num_classes - 1, MALT_POOL))
            seeds = randomness.draws(seed, runs)
            x_out = x0
            best = tf.fill(tf.shape(y), -float("inf"))
            # The best objective of the current target's runs so far (restart_within's measure).
            this_target = tf.fill(tf.shape(y), -float("inf"))

            def more(r, x_out, broken, best, this_target):
                return tf.logical_and(r < runs, tf.reduce_any(tf.logical_not(broken)))

            def run(r, x_out, broken, best, this_target):
                chosen = tf.logical_not(broken)
                if p.restart_within is not None:  # a restart: only the samples that came close
                    close = this_target > -p.restart_within
                    chosen = tf.logical_and(chosen, tf.logical_or(tf.equal(r % p.restarts, 0), close))
                todo = tf.where(chosen)[:, 0]
                goal_r = tf.gather(goal, todo)
                if aim_at_top:
                    goal_r = tf.gather(ranked[:, 1 + r // p.restarts], todo)

                def attack_todo():
                    return run_once(tf.gather(x0, todo), tf.gather(y, todo), goal_r, seeds[r], todo)

                def nothing_to_do():  # every sample left is too far for a restart
                    return (tf.gather(x0, todo), tf.zeros_like(todo, tf.bool), tf.zeros_like(todo, tf.float32))

                if p.restart_within is None:  # `more` saw an unbroken sample: never empty
                    adv, hit, value = attack_todo()
                else:
                    adv, hit, value = tf.cond(tf.size(todo) > 0, attack_todo, nothing_to_do)
                # Unbroken samples keep their highest-objective point over the runs.
                keep = tf.logical_or(hit, value > tf.gather(best, todo))
                keep = where_true(keep)
                rows = tf.gather(todo, keep)[:, None]
                x_out = tf.tensor_scatter_nd_update(x_out, rows, tf.gather(adv, keep))
                best = tf.tensor_scatter_nd_update(best, rows, tf.gather(value, keep))
                broken = tf.tensor_scatter_nd_update(broken, todo[:, None], hit)
                if p.restart_within is not None:
                    before = tf.where(tf.equal(r % p.restarts, 0), tf.fill(tf.shape(todo), -float("inf")),
                                      tf.gather(this_target, todo))
                    this_target = tf.tensor_scatter_nd_update(this_target, todo[:, None], tf.maximum(before, value))
                return r + 1, x_out, broken, best, this_target

            x_out = tf.while_loop(more, run, (tf.constant(0), x_out, broken, best, this_target))[1]
            return x_out

        return attack


# ---- objectives -----------------------------------------------------------------------------
def _objective(loss: str, targeted: bool):
    """objective(logits, y, goal) -> (B,), maximised; goal is the target class (or y)."""

    def cross_entropy(logits, y, goal):
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=goal, logits=logits)
        return -ce if targeted else ce

    def dlr(logits, y, goal):
        top = tf.sort(logits, axis=1, direction="DESCENDING")
        z_y = tf.gather(logits, y, batch_dims=1)
        y_on_top = tf.equal(tf.argmax(logits, axis=1, output_type=y.dtype), y)
        best_other = tf.where(y_on_top, top[:, 1], top[:, 0])
        return -(z_y - best_other) / (top[:, 0] - top[:, 2] + _TINY)

    def dlr_targeted(logits, y, goal):
        top = tf.sort(logits, axis=1, direction="DESCENDING")
        z_y = tf.gather(logits, y, batch_dims=1)
        z_t = tf.gather(logits, goal, batch_dims=1)
        return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)

    if loss == "ce":
        return cross_entropy
    if loss == "dlr" and not targeted:
        return dlr
    return dlr_targeted


def _nearest_boundaries_first(clf, x0, y, ranked, norm: str, pool: int):
    """MALT's targeting: among the `pool` classes with the highest clean logits after the top
    one, the order of the distance to their boundary with y in the linear approximation at x0,
    (z_y - z_j) / ||grad(z_y - z_j)||_q (q the dual norm of the budget's), nearest first; the
    other classes keep their logit order behind them. One forward and backward pass per class of the pool."""
    dual = {"inf": 1, "2": 2, "1": float("inf")}[norm]
    others = ranked[:, 1:pool + 1]

    def distance_to(k):
        # One class at a time, in a loop: one gradient graph to compile for any pool, and the
        # memory of one pass.
        with tf.GradientTape() as tape:
            tape.watch(x0)
            z = tf.cast(clf.logits(x0), tf.float32)
            gap = tf.gather(z, y, batch_dims=1) - tf.gather(z, others[:, k], batch_dims=1)
        grad = tape.gradient(gap, x0, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        size = tf.norm(tf.reshape(grad, [tf.shape(grad)[0], -1]), ord=dual, axis=1)
        return gap / (size + _TINY)

    distances = tf.transpose(tf.map_fn(distance_to, tf.range(others.shape[1]), fn_output_signature=tf.float32))
    order = tf.argsort(distances, axis=1, stable=True)
    return tf.concat([ranked[:, :1], tf.gather(others, order, batch_dims=1), ranked[:, pool + 1:]], axis=1)


def _random_direction(shape, norm: str, seed, rows=None):
    """u / ||u|| for u uniform in [-1, 1] (L-inf) or Gaussian (L2): a point on the unit sphere,
    drawn per image (rows: the places in the batch of the images given, when a subset)."""
    def make(full_shape, s):
        return randomness.uniform(full_shape, s, -1.0, 1.0) if norm == "inf" else randomness.normal(full_shape, s)

    u = make(shape, seed) if rows is None else randomness.for_rows(seed, rows)(make, shape[1:])
    if norm == "inf":
        return u / (tf.reduce_max(tf.abs(u), axis=sample_axes(u), keepdims=True) + _TINY)
    return u / (per_sample_l2(u) + _TINY)


@hookimpl
def egide_register_attacks(register):
    register(APGD)
