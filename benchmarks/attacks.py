"""Attack speed and memory benchmark: what each attack costs next to the model's own gradient.

    .venv/bin/python benchmarks/attacks.py [--quick] [--attacks pgd,cw] [--json out.json]
                                           [--redraw K] [--no-memory]

For every attack configuration, on a small 8x8x1 CNN and on a 64x64x1 brain-MRI-style CNN
(random weights fixed by seed; speed does not depend on training), it prints the seconds and
images/s of `attack.run(clf, x, y, batch_size=B)` end to end, and the ratio of that time to the
*raw cost*: T compiled forward+backward passes (cross-entropy gradient w.r.t. the input) of the
same model on the same batches, where T is the number of gradient evaluations the attack should
need. The ratio of `attack.perturb` alone (no input checks, no prediction passes, no metrics)
is printed next to it. A PASS/MISS column compares each ratio with the target the product
promises. A last section measures peak memory (RSS high-water mark, one fresh subprocess per
measurement) of PGD over 1k and 10k 64x64 images with a fixed batch size.

Timing: every function is compiled and warmed up first (including the shape of a last partial
batch), then the median of a few repeats is reported. The yardstick is the faster of
  loop  - one tf.function that loops T times over forward+backward (no Python in the loop), and
  calls - T Python calls of a tf.function doing one forward+backward,
so it is never slower than a tight compiled loop (each form is also recompiled until TF runs its
max-pool gradients on oneDNN: see `pool_grad_kernels` for that TensorFlow compile-time draw,
which the `eigenMPG` column reports for every attack and which `--redraw` factors out).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import resource
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MB = 1024 * 1024

from egide.lab.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TensorFlow's native start-up lines (oneDNN, CUDA stub) stay hidden
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # AutoGraph notices would interleave with the table
import keras  # noqa: E402

import egide  # noqa: E402

# ---- models and data ------------------------------------------------------------------------


def small_cnn():
    """8x8x1 -> 10 logits: the kind of tiny CNN the test suite uses."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ],
        name="cnn8",
    )
    return egide.Classifier.from_keras(model, clip=(0.0, 1.0))


def mri_cnn():
    """64x64x1 -> 4 classes with a softmax head: a typical brain-MRI slice classifier."""
    keras.utils.set_random_seed(1)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(4, activation="softmax"),
        ],
        name="mri64",
    )
    return egide.Classifier.from_keras(model, clip=(0.0, 1.0))


MODELS = {"cnn8": small_cnn, "mri64": mri_cnn}


def make_data(clf, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, *clf.input_shape), dtype=np.float32)
    y = rng.integers(0, clf.num_classes, n).astype(np.int64)
    return x, y


def batch_tensors(x, y, batch_size: int):
    """The batches as `Attack.run` builds them: (x, y, per-batch seed) tensors."""
    out = []
    for index, start in enumerate(range(0, len(x), batch_size)):
        stop = start + batch_size
        out.append(
            (
                tf.constant(x[start:stop]),
                tf.constant(y[start:stop]),
                tf.constant([0, index], dtype=tf.int64),
            )
        )
    return out


def warm_slice(n: int, batch_size: int) -> int:
    """Enough images to see both the full-batch shape and the last partial batch's shape."""
    return min(n, batch_size + (n % batch_size))


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pool_grad_kernels(fn) -> tuple[int, int] | None:
    """Run fn once under the TF profiler; return (Eigen, oneDNN) counts of max-pool gradients.

    TensorFlow's oneDNN graph rewrite turns `MaxPoolGrad` into the fast `_MklNativeMaxPoolGrad`
    only when it meets the forward pool already rewritten, and the order it meets them in
    varies from one compilation to the next: an identical graph compiled twice can run its
    max-pool gradients on the plain Eigen kernel (10-16x slower) in one and on oneDNN in the
    other. Counting the kernels that actually ran makes that visible. None: no profiler.
    """
    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        return None
    logdir = tempfile.mkdtemp(prefix="egide-bench-")
    try:
        tf.profiler.experimental.start(logdir)
        try:
            fn()
        finally:
            tf.profiler.experimental.stop()
        eigen = onednn = 0
        for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
            space = xplane_pb2.XSpace()
            with open(path, "rb") as fh:
                space.ParseFromString(fh.read())
            for plane in space.planes:
                names = plane.event_metadata
                for line in plane.lines:
                    for event in line.events:
                        op = names[event.metadata_id].name.rsplit(":", 1)[-1]
                        if op == "MaxPoolGrad":
                            eigen += 1
                        elif op.startswith("_Mkl") and op.endswith("MaxPoolGrad"):
                            onednn += 1
        return eigen, onednn
    except Exception:  # the profiler is a diagnostic; never let it break a measurement
        return None
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def eigen_share(counts: tuple[int, int] | None) -> str:
    """'0%'..'100%': share of max-pool gradients on the slow Eigen kernel; '-' if none; '?'."""
    if counts is None:
        return "?"
    eigen, onednn = counts
    return "-" if eigen + onednn == 0 else f"{round(100 * eigen / (eigen + onednn))}%"


# ---- the yardstick: T raw forward+backward passes ---------------------------------------------


class Yardstick:
    """Raw gradient cost of one classifier: T forward+backward passes over the same batches.

    Two forms: `loop`, one tf.function looping T times, and `calls`, T calls of a tf.function
    doing one pass. For each batch shape, each form is compiled up to ATTEMPTS times until its
    max-pool gradients run on oneDNN (see `pool_grad_kernels`), so the yardstick is the tight
    compiled loop, not a slow draw of the compiler; the faster form is the yardstick.
    """

    ATTEMPTS = 6

    def __init__(self, clf):
        self.clf = clf
        self.compiled: dict[tuple, tuple] = {}
        self.choice: dict[tuple, tuple[str, float, float]] = {}

        def grad(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.keras.losses.sparse_categorical_crossentropy(
                    y, clf.logits(x), from_logits=True
                )
            return tape.gradient(loss, x)

        def one(x, y):
            # A tiny step keeps the chain of passes sequential, as in an attack.
            return x + 1e-6 * grad(x, y)

        def loop(x, y, steps):
            # An explicit tf.while_loop, as the attacks use: the AutoGraph form of the same loop
            # draws the slow Eigen max-pool gradient far more often (see pool_grad_kernels).
            _, x = tf.while_loop(
                lambda t, x: t < steps, lambda t, x: (t + 1, x + 1e-6 * grad(x, y)), (0, x)
            )
            return x

        self.forms = {"loop": loop, "calls": one}

    @staticmethod
    def _shapes(batches) -> list:
        """The first batch, plus the last one when it has another shape (one trace each)."""
        ends = batches[:1] + batches[-1:]
        return ends[:1] if ends[0][0].shape == ends[-1][0].shape else ends

    def _compile(self, form: str, xb, yb):
        """(tf.function, (Eigen, oneDNN) counts) for one form and one batch shape."""
        key = (form, tuple(xb.shape))
        if key not in self.compiled:
            best = None
            one = tf.constant(1, tf.int32)
            for _ in range(self.ATTEMPTS):
                fn = tf.function(self.forms[form], reduce_retracing=True)

                def probe(fn=fn):
                    (fn(xb, yb, one) if form == "loop" else fn(xb, yb)).numpy()

                probe()  # compile
                counts = pool_grad_kernels(probe)
                eigen = counts[0] if counts else 0
                if best is None or eigen < best[1]:
                    best = (fn, eigen, counts)
                if eigen == 0:
                    break
            self.compiled[key] = (best[0], best[2])
        return self.compiled[key]

    def timer(self, batches, steps: int):
        """(function timing one yardstick pass over batches, form, loop s, calls s, Eigen share)."""
        fns = {}
        counts = {"loop": [0, 0], "calls": [0, 0]}
        for form in ("loop", "calls"):
            for xb, yb, _ in self._shapes(batches):
                fn, c = self._compile(form, xb, yb)
                fns[form, xb.shape[0]] = fn
                if c is None:
                    counts[form] = None
                elif counts[form] is not None:
                    counts[form] = [counts[form][0] + c[0], counts[form][1] + c[1]]
        t_steps = tf.constant(steps, tf.int32)

        def run_loop():
            for xb, yb, _ in batches:
                fns["loop", xb.shape[0]](xb, yb, t_steps).numpy()

        def run_calls():
            for xb, yb, _ in batches:
                one_fn = fns["calls", xb.shape[0]]
                xa = xb
                for _ in range(steps):
                    xa = one_fn(xa, yb)
                xa.numpy()

        key = (len(batches), tuple(b[0].shape[0] for b in batches), steps)
        if key not in self.choice:
            t_loop, t_calls = median_time(run_loop, 1), median_time(run_calls, 1)
            self.choice[key] = ("loop" if t_loop <= t_calls else "calls", t_loop, t_calls)
        kind, t_loop, t_calls = self.choice[key]
        runner = run_loop if kind == "loop" else run_calls
        return runner, kind, t_loop, t_calls, eigen_share(counts[kind] and tuple(counts[kind]))


# ---- configurations -----------------------------------------------------------------------


@dataclass
class Case:
    attack: str
    model: str
    params: dict
    steps: int  # gradient evaluations per restart (T)
    restarts: int = 1
    n: int = 256
    batch_size: int = 64
    target: float | None = 1.15  # on the end-to-end ratio divided by `restarts`
    label: str = ""
    # "random" labels, or the model's own predictions: every image correctly classified, so an
    # attack that skips misclassified images (APGD) attacks all of them and pays its full cost.
    labels: str = "random"

    @property
    def grads(self) -> int:
        return self.steps * self.restarts


@dataclass
class Row:
    attack: str
    model: str
    config: str
    n: int
    batch_size: int
    grads: int
    restarts: int
    run_s: float = math.nan
    images_per_s: float = math.nan
    perturb_s: float = math.nan
    base_s: float = math.nan
    base_kind: str = ""
    base_loop_s: float = math.nan
    base_calls_s: float = math.nan
    ratio_run: float = math.nan
    ratio_perturb: float = math.nan
    cpu_ratio_run: float = math.nan
    pool_eigen_attack: str = ""
    pool_eigen_base: str = ""
    judged: float = math.nan
    target: float | None = None
    verdict: str = ""
    note: str = ""
    params: dict = field(default_factory=dict)


EPS = 8 / 255
STEP = 2 / 255


def cases(quick: bool) -> list[Case]:
    out: list[Case] = []
    steps_list = (10,) if quick else (10, 40)
    sizes = {"cnn8": (1024, 128), "mri64": (128, 64)} if quick else {"cnn8": (4096, 128), "mri64": (256, 64)}
    for model, (n, b) in sizes.items():
        common = dict(model=model, n=n, batch_size=b)
        out.append(Case("fgsm", params=dict(eps=EPS), steps=1, target=None, label="eps=8/255", **common))
        for t in steps_list:
            out.append(
                Case("pgd", params=dict(eps=EPS, step_size=STEP, steps=t, restarts=1,
                                        random_start=True, early_stop=False),
                     steps=t, label=f"steps={t}", **common)
            )
        if not (quick and model == "mri64"):
            out.append(
                Case("pgd", params=dict(eps=EPS, step_size=STEP, steps=10, restarts=3,
                                        random_start=True, early_stop=False),
                     steps=10, restarts=3, label="steps=10 R=3", **common)
            )
        for t in steps_list:
            out.append(Case("bim", params=dict(eps=EPS, step_size=STEP, steps=t),
                            steps=t, label=f"steps={t}", **common))
        for t in steps_list:
            out.append(Case("mim", params=dict(eps=EPS, step_size=STEP, steps=t, decay=1.0),
                            steps=t, label=f"steps={t}", **common))
        # APGD: N iterations cost N + 1 gradients (the start point's), plus one forward pass;
        # the target is 1.1 x N.
        for t in steps_list:
            out.append(Case("apgd", params=dict(eps=EPS, steps=t), steps=t, target=1.1,
                            labels="predicted", label=f"steps={t}", **common))
        out.append(Case("apgd", params=dict(eps=EPS, steps=100 if not quick else 20, loss="dlr"),
                        steps=100 if not quick else 20, target=1.1, labels="predicted",
                        label="dlr steps=" + ("20" if quick else "100"), **common))
    bs, it = (2, 50) if quick else (5, 100)
    out.append(
        Case("cw", model="cnn8", n=450, batch_size=128,
             params=dict(binary_search_steps=bs, steps=it, abort_early=False),
             steps=bs * it, target=1.2, label=f"{bs}x{it} steps")
    )
    return out


# ---- measuring one case ------------------------------------------------------------------


def usable_params(cls, params: dict) -> tuple[dict, list[str]]:
    """Keep the parameters the plugin declares; report the ones it lacks."""
    fields = getattr(cls.Params, "model_fields", {})
    kept = {k: v for k, v in params.items() if k in fields}
    return kept, sorted(set(params) - set(kept))


def measure(case: Case, reg, clf, yard: Yardstick, repeats: int, redraw: int = 0) -> Row:
    row = Row(case.attack, case.model, case.label, case.n, case.batch_size, case.grads,
              case.restarts, target=case.target)
    cls = reg.get("attack", case.attack)
    params, missing = usable_params(cls, case.params)
    row.params = params
    notes = []
    if missing:
        notes.append(f"plugin has no parameter(s) {', '.join(missing)}; used its defaults")
    x, y = make_data(clf, case.n, seed=case.n)
    if case.labels == "predicted":
        y = clf.predict(x)
    b = case.batch_size
    batches = batch_tensors(x, y, b)
    w = warm_slice(case.n, b)

    def probe(attack):
        for xb, yb, seed in Yardstick._shapes(batches):
            np.asarray(attack.perturb(clf, xb, yb, None, seed))

    # Warm-up: compile every function run() and perturb() use, for both batch shapes. With
    # --redraw, recompile (a fresh instance) until the max-pool gradients run on oneDNN.
    for attempt in range(1, max(1, redraw) + 1):
        attack = cls(**params)
        attack.run(clf, x[:w], y[:w], batch_size=b)
        if not redraw:
            break
        counts = pool_grad_kernels(lambda: probe(attack))
        if counts is None or counts[0] == 0:
            break
    if redraw:
        notes.append(f"compiled {attempt} time(s) to draw oneDNN max-pool gradients (--redraw)")
    row.note = "; ".join(notes)

    base, row.base_kind, row.base_loop_s, row.base_calls_s, row.pool_eigen_base = yard.timer(
        batches, case.steps
    )

    def run():
        attack.run(clf, x, y, batch_size=b)

    def perturb(some=batches):
        for xb, yb, seed in some:
            np.asarray(attack.perturb(clf, xb, yb, None, seed))

    # Interleave yardstick, run and perturb in every repeat, so that a change in machine load
    # hits all three alike; ratios are the medians of the per-repeat ratios. CPU time (all
    # threads) is kept too: it barely moves when other processes compete for the cores.
    wall = {"base": [], "run": [], "perturb": []}
    cpu = {"base": [], "run": [], "perturb": []}
    for _ in range(repeats):
        for name, fn in (("base", base), ("run", run), ("perturb", perturb)):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    row.base_s = statistics.median(wall["base"])
    row.run_s = statistics.median(wall["run"])
    row.perturb_s = statistics.median(wall["perturb"])
    # The yardstick is measured for T = steps; restarts multiply the expected cost by R.
    row.ratio_run = statistics.median([r / q for r, q in zip(wall["run"], wall["base"])])
    row.ratio_perturb = statistics.median([r / q for r, q in zip(wall["perturb"], wall["base"])])
    row.cpu_ratio_run = statistics.median([r / q for r, q in zip(cpu["run"], cpu["base"])])
    row.pool_eigen_attack = eigen_share(pool_grad_kernels(lambda: probe(attack)))
    row.images_per_s = case.n / row.run_s
    row.judged = row.ratio_run / case.restarts
    if case.target is None:
        row.verdict = "-"
    else:
        row.verdict = "PASS" if row.judged <= case.target else "MISS"
        if row.verdict == "MISS" and row.pool_eigen_attack not in ("0%", "-", "?"):
            row.verdict = "MISS*"
    return row


# ---- memory: one fresh process per measurement -------------------------------------------


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_probe(n: int, batch_size: int, steps: int) -> dict:
    """Run PGD over n 64x64 images in this (fresh) process; return its RSS high-water marks.

    `peak_rss` is getrusage's high-water mark for the whole process. TF's start-up can set a
    higher mark than a small run, hiding the run; so on Linux the mark is also reset just
    before the run (`/proc/self/clear_refs`), and `run_peak_rss` is the mark of the run alone.
    """
    clf = mri_cnn()
    x, y = make_data(clf, n, seed=n)
    reg = egide.registry()
    params, _ = usable_params(
        reg.get("attack", "pgd"),
        dict(eps=EPS, step_size=STEP, steps=steps, restarts=1, random_start=True, early_stop=False),
    )
    attack = reg.create("attack", "pgd", **params)
    rss_before = (_proc_status_kb("VmRSS") or 0) * 1024
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM, the peak resident set size
        reset = True
    except OSError:
        pass
    started = time.perf_counter()
    attack.run(clf, x, y, batch_size=batch_size)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hwm = _proc_status_kb("VmHWM")
    run_peak = hwm * 1024 if reset and hwm else peak
    return {"n": n, "batch_size": batch_size, "steps": steps, "peak_rss": peak,
            "run_peak_rss": run_peak, "run_peak_is_reset": reset, "rss_before_run": rss_before,
            "seconds": seconds}


def memory_section(quick: bool) -> dict:
    batch_size, steps = 128, (1 if quick else 5)
    sizes = (1000, 4000) if quick else (1000, 10000)
    probes = []
    for n in sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", f"{n},{batch_size},{steps}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"memory probe for n={n} failed:\n{proc.stderr[-2000:]}")
        probes.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    per_image = 64 * 64 * 1 * 4
    for p in probes:
        p["data_bytes"] = 2 * p["n"] * per_image  # x and x_adv
    small, large = probes
    d_peak = large["run_peak_rss"] - small["run_peak_rss"]
    d_data = large["data_bytes"] - small["data_bytes"]
    own = d_peak - d_data
    limit = 64 * MB
    return {
        "probes": probes,
        "delta_peak": d_peak,
        "delta_data": d_data,
        "own_growth": own,
        "limit": limit,
        "verdict": "PASS" if own <= limit else "MISS",
    }


# ---- output ------------------------------------------------------------------------------

COLUMNS = [
    ("attack", 6, "<"), ("model", 5, "<"), ("config", 12, "<"), ("N", 5, ">"), ("B", 4, ">"),
    ("T", 4, ">"), ("run s", 7, ">"), ("img/s", 7, ">"), ("base s", 7, ">"), ("base", 5, "<"),
    ("run×", 5, ">"), ("pert×", 5, ">"), ("cpu×", 5, ">"), ("eigenMPG", 9, ">"),
    ("judged (target)", 17, "<"), ("result", 6, "<"),
]


def _fmt_s(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_row(r: Row) -> str:
    if r.restarts > 1:
        judged = f"{r.ratio_run:.2f}/{r.restarts}={r.judged:.2f}"
    else:
        judged = f"{r.judged:.2f}"
    judged += f" (≤{r.target:g})" if r.target is not None else " (none)"
    cells = [
        r.attack, r.model, r.config, str(r.n), str(r.batch_size), str(r.grads),
        _fmt_s(r.run_s), f"{r.images_per_s:.0f}", _fmt_s(r.base_s), r.base_kind,
        f"{r.ratio_run:.2f}", f"{r.ratio_perturb:.2f}", f"{r.cpu_ratio_run:.2f}",
        f"{r.pool_eigen_attack}/{r.pool_eigen_base}", judged, r.verdict,
    ]
    return "  ".join(f"{c:{a}{w}}" for c, (_, w, a) in zip(cells, COLUMNS))


def header() -> str:
    head = "  ".join(f"{n:{a}{w}}" for n, w, a in COLUMNS)
    return head + "\n" + "-" * len(head)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller set (< 2 minutes)")
    parser.add_argument("--attacks", default="", help="comma-separated attack names (default: all)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory section")
    parser.add_argument(
        "--redraw", type=int, default=0, metavar="K",
        help="recompile each attack up to K times until TF runs its max-pool gradients on "
        "oneDNN: measures the attack's own code rather than TF's compile-time draw",
    )
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        n, b, s = (int(v) for v in args.memory_probe.split(","))
        print(json.dumps(memory_probe(n, b, s)))
        return 0

    started = time.perf_counter()
    wanted = {a.strip() for a in args.attacks.split(",") if a.strip()}
    reg = egide.registry(reload=True)
    available = set(reg.names("attack"))
    all_cases = [c for c in cases(args.quick) if not wanted or c.attack in wanted]
    repeats = 2 if args.quick else 3

    gpus = len(tf.config.list_physical_devices("GPU"))
    print(f"Égide attack benchmark ({'quick' if args.quick else 'full'}): TF {tf.__version__}, "
          f"Keras {keras.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPU(s), {gpus or 'no'} GPU(s)")
    print("run×  = attack.run(clf, x, y, batch_size=B) end to end / raw cost of T gradient passes "
          "on the same batches")
    print("pert× = attack.perturb over the same batches (no checks, predictions, metrics) / raw cost")
    print("raw cost ('base'): fastest of 'loop' (one tf.function looping T times) and 'calls' "
          "(T calls of a compiled single pass);")
    print(f"        interleaved with run and perturb in each of {repeats} timed repeats after a "
          "compiled warm-up; ratios are medians.")
    print("T = gradient evaluations the attack should need (FGSM 1, PGD/BIM/MIM steps x restarts, "
          "C&W rounds x steps).")
    print("cpu×  = the run× ratio in CPU time of all threads (steadier than wall time on a busy "
          "machine)")
    print("eigenMPG = attack/yardstick share of max-pool gradients TF left on the slow Eigen "
          "kernel instead of oneDNN")
    print("        (decided anew at every compilation; 0% is the fast case, see benchmarks/README.md)")
    print("PGD runs with early_stop=False and C&W with abort_early=False, so they do all T steps.")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) - 0.5:
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPU(s): other processes compete "
              "for the CPU, so timings are noisy (ratios are interleaved to limit the damage)")
    for name in sorted({c.attack for c in all_cases} - available):
        failure = next((f for f in reg.failures if f.entry_point == name), None)
        why = f"failed to load: {failure.error}" if failure else "not registered yet"
        print(f"note: skipping '{name}': {why}")
    for name in sorted(wanted - {c.attack for c in cases(False)}):
        print(f"note: no benchmark configuration for '{name}'")
    print()

    classifiers = {}
    yardsticks = {}
    rows: list[Row] = []
    print(header(), flush=True)
    for case in all_cases:
        if case.attack not in available:
            continue
        if case.model not in classifiers:
            classifiers[case.model] = MODELS[case.model]()
            yardsticks[case.model] = Yardstick(classifiers[case.model])
        try:
            row = measure(case, reg, classifiers[case.model], yardsticks[case.model], repeats,
                          args.redraw)
        except Exception as exc:  # one broken plugin must not hide the others' numbers
            print(f"{case.attack:<6}  {case.model:<5}  {case.label:<12}  ERROR: "
                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
            rows.append(Row(case.attack, case.model, case.label, case.n, case.batch_size,
                            case.grads, case.restarts, target=case.target, verdict="ERROR",
                            note=f"{type(exc).__name__}: {exc}"))
            continue
        rows.append(row)
        print(format_row(row), flush=True)
        if row.note:
            print(f"        note: {row.note}", flush=True)

    memory = None
    if not args.no_memory and (not wanted or "pgd" in wanted):
        print()
        if "pgd" not in available:
            print("note: skipping the memory section: 'pgd' is not registered yet")
        else:
            memory = memory_section(args.quick)
            p1, p2 = memory["probes"]
            print(f"Memory: PGD ({p1['steps']} step(s)) on 64x64 images, batch size "
                  f"{p1['batch_size']}, one fresh process per N")
            print("  peak RSS = getrusage high-water mark of the process; run peak = high-water mark "
                  "of the run alone" + ("" if p1["run_peak_is_reset"] else " (reset unavailable: "
                                        "same as peak RSS)"))
            print(f"{'N':>6}  {'peak RSS MB':>11}  {'RSS before run MB':>17}  {'run peak MB':>11}  "
                  f"{'x + x_adv MB':>12}  {'run s':>6}")
            for p in memory["probes"]:
                print(f"{p['n']:>6}  {p['peak_rss'] / MB:>11.0f}  {p['rss_before_run'] / MB:>17.0f}  "
                      f"{p['run_peak_rss'] / MB:>11.0f}  {p['data_bytes'] / MB:>12.0f}  "
                      f"{p['seconds']:>6.1f}")
            print(f"growth {p1['n']}->{p2['n']}: run peak +{memory['delta_peak'] / MB:.0f} MB, of which "
                  f"data (x + x_adv) +{memory['delta_data'] / MB:.0f} MB; attack's own growth "
                  f"{memory['own_growth'] / MB:+.0f} MB (flat if ≤ {memory['limit'] / MB:.0f} MB): "
                  f"{memory['verdict']}")

    if any(r.verdict == "MISS*" for r in rows):
        print("\nMISS* = this compilation of the attack ran some max-pool gradients on the slow Eigen "
              "kernel (eigenMPG > 0%),\n        a TensorFlow draw a user can get too; --redraw K "
              "measures the attack's own code on a oneDNN draw.")
    total = time.perf_counter() - started
    load_end = os.getloadavg()[0]
    print(f"\n{len(rows)} configuration(s) measured in {total:.0f} s; "
          f"{sum(r.verdict == 'PASS' for r in rows)} PASS, "
          f"{sum(r.verdict.startswith('MISS') for r in rows)} MISS, "
          f"{sum(r.verdict == 'ERROR' for r in rows)} ERROR"
          + (f"; memory {memory['verdict']}" if memory else "")
          + f" (load average at the end: {load_end:.1f})")

    if args.json:
        payload = {
            "quick": args.quick,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "cpus": os.cpu_count(),
            "repeats": repeats,
            "redraw": args.redraw,
            "skipped": sorted({c.attack for c in all_cases} - available),
            "rows": [asdict(r) for r in rows],
            "memory": memory,
            "seconds": total,
            "load_average_start": load,
            "load_average_end": load_end,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2, default=str)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
