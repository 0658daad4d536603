"""The `egide` command line.

    egide plugins [--json]
    egide attack --model M --data D --attack NAME [--param key=value ...] --out adv.npz

User errors (bad names, parameters, files, data) print one clear message and exit with 2;
only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import EgideError, InputError

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.handler(args) or 0
    except EgideError as exc:
        print(f"egide: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("egide: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    from egide import __version__

    parser = argparse.ArgumentParser(
        prog="egide", description="Attack, defend and guard image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"egide {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list the plugins found, and the ones that failed to load")
    p.add_argument("--json", action="store_true", help="print kinds, names, versions and schemas as JSON")
    p.add_argument("--verbose", "-v", action="store_true", help="show tracebacks of load failures")
    p.set_defaults(handler=_cmd_plugins)

    p = sub.add_parser("attack", help="run one attack on a model and data set, save the result")
    p.add_argument("--model", required=True, help="a .keras or .h5 model file")
    p.add_argument("--data", required=True, help="an .npz file or a folder of class subfolders")
    p.add_argument("--attack", required=True, help="attack name (see `egide plugins`)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="attack parameter, repeatable; values are JSON or fractions (eps=8/255)",
    )
    p.add_argument("--split", default=None, help="data split to use (e.g. test), if the data has splits")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch (default 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--target", default=None,
        help="targeted attacks: a class index or name for every image, or 'next' for (y+1) mod K",
    )
    p.add_argument("--clip", default="0,1", help="the model's input range LOW,HIGH (default 0,1)")
    p.add_argument("--out", required=True, help="where to write the result (.npz; a .json summary is written beside)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_cmd_attack)
    return parser


# ---- egide plugins --------------------------------------------------------------------
def _cmd_plugins(args) -> int:
    from .registry import registry

    reg = registry()
    if args.json:
        print(json.dumps(reg.describe(), indent=2))
        return 0
    rows = [("KIND", "NAME", "TITLE", "VERSION", "FROM")]
    for cls in reg.plugins():
        src = reg.source(cls.kind, cls.name)
        rows.append((cls.kind, cls.name, cls.title, cls.version or "-", src.distribution or "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if reg.disabled:
        print(f"\ndisabled by EGIDE_DISABLE_PLUGINS: {', '.join(reg.disabled)}")
    if reg.failures:
        print(f"\n{len(reg.failures)} plugin(s) failed to load:")
        for f in reg.failures:
            print(f"  {f.entry_point} ({f.distribution or 'no distribution'}): {f.error}")
            if args.verbose:
                print("    " + f.details.replace("\n", "\n    "))
    return 0


# ---- egide attack ---------------------------------------------------------------------
def parse_param(text: str) -> tuple[str, Any]:
    """'eps=8/255' -> ('eps', 0.0313...); values are JSON, a fraction, or plain text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--param expects KEY=VALUE, got {text!r}")
    raw = raw.strip()
    try:
        value: Any = json.loads(raw.lower() if raw.lower() in ("true", "false", "null") else raw)
    except json.JSONDecodeError:
        num, slash, den = raw.partition("/")
        try:
            value = float(num) / float(den) if slash else raw
        except (ValueError, ZeroDivisionError):
            value = raw
    return key.strip(), value


def _parse_clip(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--clip expects LOW,HIGH such as 0,1 or 0,255; got {text!r}") from None
    return lo, hi


def _targets(spec: str | None, y, class_names, num_classes):
    import numpy as np

    if spec is None:
        return None
    if spec == "next":
        return (y + 1) % num_classes
    if spec in class_names:
        return np.full_like(y, list(class_names).index(spec))
    try:
        index = int(spec)
    except ValueError:
        raise InputError(
            f"--target {spec!r} is neither a class index, a class name ({', '.join(class_names)}) "
            "nor 'next'"
        ) from None
    return np.full_like(y, index)


def _cmd_attack(args) -> int:
    from egide.core.data import load as load_data

    from .classifier import Classifier
    from .registry import registry

    params = dict(parse_param(p) for p in args.param)
    attack = registry().create("attack", args.attack, **params)  # fail fast on bad params
    clf = Classifier.load(args.model, clip=_parse_clip(args.clip))
    data = load_data(args.data, split=args.split, limit=args.limit).for_classifier(clf)
    target = _targets(args.target, data.y, data.class_names, clf.num_classes)

    with _progress_bar(len(data), f"{attack.name}", disabled=args.no_progress) as progress:
        result = attack.run(
            clf, data.x, data.y, target=target, batch_size=args.batch_size, seed=args.seed,
            progress=progress,
        )
    out = result.save(args.out)
    summary = {
        **result.summary(),
        "model": clf.describe(),
        "data": {"source": str(args.data), "split": args.split, "class_names": list(data.class_names)},
        "output": str(out),
    }
    summary_path = out.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, out, summary_path)
    return 0


def _print_summary(s: dict, out: Path, summary_path: Path) -> None:
    print(f"{s['attack']} on {s['images']} images ({s['seconds']:.2f} s, {s['images_per_second']} images/s)")
    print(f"  clean accuracy   {s['clean_accuracy']:.2%}")
    print(f"  robust accuracy  {s['robust_accuracy']:.2%}")
    print(f"  success rate     {s['success_rate']:.2%}")
    print(f"  L2    mean {s['l2_mean']:.4g}  max {s['l2_max']:.4g}")
    print(f"  Linf  mean {s['linf_mean']:.4g}  max {s['linf_max']:.4g}")
    print(f"wrote {out} and {summary_path}")


class _progress_bar:
    """A tqdm bar on stderr fed by the attack's progress callback (hidden when not a terminal)."""

    def __init__(self, total: int, label: str, disabled: bool = False):
        self.total, self.label, self.disabled = total, label, disabled
        self.bar = None

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.total, desc=self.label, unit="img", file=sys.stderr,
            disable=True if self.disabled else None, leave=False,
        )
        return self.update

    def update(self, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
