"""The `egide` command line.

    egide plugins [--json]
    egide attack --model M --data D --attack NAME [--param key=value ...] --out adv.npz
                 [--defense NAME [--defense-param key=value ...] [--non-adaptive]]
    egide evaluate [--model M] [--data D] [--attacks a,b] [--eps 1/255,4/255] [--out DIR]
    egide card [--report DIR | evaluate's flags] [--negative-class C] [--certify]
    egide train [--architecture M] [--data D] --out model.keras
    egide defend --defense adversarial-training --model M --data D --out defended.keras
    egide serve [--host 127.0.0.1] [--port 8000] [--instance PATH] [--token T]

User errors (bad names, parameters, files, data) print one clear message and exit with 2;
only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from egide.core.classifier import Classifier
from egide.core.errors import DataError, EgideError, InputError
from egide.core.preprocess import Preprocessor
from egide.core.registry import registry
from egide.lab import services
from egide.lab.data import Subset, for_classifier
from egide.lab.data import load as load_data
from egide.lab.quiet import import_tensorflow_quietly
from egide.lab.report.files import write_report
from egide.lab.report.format import Units, check_mark, detector_fit_text
from egide.lab.report.model import eps_key
from egide.lab.services import parse_normalize, parse_number, parse_param, parse_range

EXIT_USER_ERROR = 2
DEFAULT_PORT = 8000  # the one default port: `egide serve`, scripts/run.sh and the README


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
    _quiet_retracing_warnings()
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        _check_model_file_early(args)
        import_tensorflow_quietly()  # after parsing: --help stays instant
        return args.handler(args) or 0
    except EgideError as exc:
        print(f"egide: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("egide: interrupted", file=sys.stderr)
        return 130


def _check_model_file_early(args) -> None:
    """A --model path that cannot be a Keras file is refused before TensorFlow starts (seconds),
    with the same words as the page's upload. Names without a suffix are named models."""
    from egide.core.model_file import MODEL_SUFFIXES, check_model_file

    model = getattr(args, "model", None)
    # Another suffix (.onnx) is for the installed model formats to read or refuse, at load.
    if isinstance(model, str) and Path(model).suffix.lower() in MODEL_SUFFIXES:
        check_model_file(Path(model).expanduser(), model)


def _not_a_retracing_warning(record) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


def _quiet_retracing_warnings() -> None:
    """An evaluation compiles each attack once per budget and per defense view, on purpose;
    TensorFlow's "triggered tf.function retracing" warning about it is noise to a CLI user.
    (addFilter ignores a filter already added, so repeated main() calls add it once.)"""
    import logging

    logging.getLogger("tensorflow").addFilter(_not_a_retracing_warning)


def _parser() -> argparse.ArgumentParser:
    from egide.core import __version__

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
    p.add_argument("--model", required=True, help="a .keras, .h5 or .onnx model file")
    p.add_argument("--data", required=True, help="an .npz file or a folder of class subfolders")
    p.add_argument("--attack", required=True, help="attack name (see `egide plugins`)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="attack parameter, repeatable; values are JSON or fractions (eps=8/255)",
    )
    p.add_argument("--split", default=None, help="data split to use (e.g. test), if the data has splits")
    _limit_options(p, "attack")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per batch (default: as many as the model's memory footprint allows)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--target", default=None,
        help="targeted attacks: a class index or name for every image, or 'next' for (y+1) mod K "
        "(the default)",
    )
    _scan_options(p)
    _input_range_option(p)
    p.add_argument("--defense", default=None, help="a preprocessing defense to put in front of the model (see `egide plugins`)")
    p.add_argument(
        "--defense-param", action="append", default=[], metavar="KEY=VALUE",
        help="defense parameter, repeatable; values are JSON or fractions (sigma=1/255)",
    )
    adaptive = p.add_mutually_exclusive_group()
    adaptive.add_argument(
        "--adaptive", dest="adaptive", action="store_true", default=None,
        help="attack the defense adaptively, through BPDA/EOT (the default, as in the API and the page)",
    )
    adaptive.add_argument(
        "--non-adaptive", dest="adaptive", action="store_false",
        help="attack the defense as it is: overstates a defense that hides its gradient; accuracy is "
        "always measured on the real defended model",
    )
    p.add_argument("--out", required=True, help="where to write the result (.npz; a .json summary is written beside)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=_cmd_attack)

    p = sub.add_parser(
        "evaluate",
        help="robustness report: attacks x epsilons on a model and data set (the demo by default)",
        description="Run attacks at several epsilons and write report.json and report.html. "
        "With no arguments: the demo model on the demo test split, the five seed attacks, "
        "eps 1/255, 2/255, 4/255, 8/255.",
    )
    _evaluation_options(p)
    p.add_argument("--json", action="store_true", help="print report.json's content instead of the table")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "card",
        help="robustness card (HTML, PDF, JSON) of an evaluation: a finished one (--report) or one run now",
        description="Write card.html, card.pdf and card.json: what was tested (hashes), against what, what "
        "held (with exact intervals), where attacked images go clinically, and the limitations. With --report "
        "DIR, from the finished evaluation in DIR (written beside it); else the evaluation runs first, with the "
        "same flags as `egide evaluate` (the demo by default), and both land in --out.",
    )
    p.add_argument("--report", metavar="DIR", help="a finished evaluation's folder (its report.json): no attack runs")
    p.add_argument("--certify", action="store_true",
                   help="add a certified lower bound: randomized smoothing (Cohen et al. 2019) of the evaluated "
                   "images at the same budgets, as L2 radii")
    p.add_argument("--certify-samples", type=int, default=1000, metavar="N",
                   help="with --certify: noisy copies per image that bound its vote (default 1000)")
    p.add_argument("--certify-sigma", type=float, metavar="SIGMA",
                   help="with --certify: the noise level (default: the evaluated randomized-smoothing defense's, "
                   "else 0.25, Cohen et al.'s smallest)")
    _evaluation_options(p)
    p.set_defaults(handler=_cmd_card)

    p = sub.add_parser("train", help="train a model architecture on a data set (the demo model by default)")
    p.add_argument("--data", help="named data set, .npz or folder with train/val splits (default: the data "
                   "set the architecture declares, the demo's)")
    p.add_argument("--architecture", help="a named model whose architecture to train (default: the installed "
                   "demo model)")
    p.add_argument("--out", required=True, help="where to save the trained model (.keras)")
    p.add_argument("--epochs", type=int, help="passes over the train split (default: the architecture's recipe)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the recipe's)")
    p.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    p.add_argument("--no-progress", action="store_true", help="hide the per-batch progress bar")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "defend",
        help="train a defended copy of a model with a trainer defense (e.g. adversarial-training)",
        description="Fit a more robust copy of the model with a trainer defense, on the data's "
        "train split (validated on its val split, or on 10% of train held out). A checkpoint "
        "is written beside --out after every epoch: rerun the same command to resume.",
    )
    p.add_argument("--defense", required=True, help="trainer name (see `egide plugins`)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="defense parameter, repeatable; values are JSON or fractions (eps=4/255)",
    )
    p.add_argument("--model", required=True, help="named model or .keras/.h5 file to start from")
    p.add_argument("--data", required=True, help="named data set, .npz or folder with a train split")
    p.add_argument("--out", required=True, help="where to save the defended model (.keras)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: <out>.ckpt)")
    p.add_argument("--no-checkpoint", action="store_true", help="do not write a checkpoint")
    p.add_argument("--limit", type=int, metavar="N", help="train on N images of the train split, drawn "
                   "stratified by class under --seed")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _input_range_option(p)
    p.add_argument("--no-progress", action="store_true", help="hide the per-batch progress bar")
    p.set_defaults(handler=_cmd_defend)

    p = sub.add_parser("serve", help="run the web lab and JSON API (http://127.0.0.1:8000 by default)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000, or EGIDE_PORT)")
    p.add_argument("--instance", default=None, help="folder for the job store and artifacts (or EGIDE_INSTANCE_PATH)")
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' on the API (or EGIDE_API_TOKEN)")
    p.add_argument("--workers", type=int, default=None, help="job worker threads (default 1, or EGIDE_WORKERS)")
    p.set_defaults(handler=_cmd_serve)
    return parser


def _evaluation_options(p) -> None:
    """The flags of an evaluation (egide evaluate, and egide card when it runs one)."""
    p.add_argument("--config", help="a JSON file with the evaluation settings (flags override it)")
    p.add_argument("--model", help="named model, .keras/.h5 file, or .onnx file (default: the installed demo model)")
    p.add_argument("--data", help="named data set, .npz or image folder (default: the one the model declares, "
                   "the demo's)")
    p.add_argument("--split", help="data split (default test; 'all' for data without splits)")
    p.add_argument("--attacks", help="comma-separated attack names (default fgsm,pgd,bim,mim,cw)")
    p.add_argument("--eps", help="comma-separated epsilons; fractions allowed (default 1/255,2/255,4/255,8/255)")
    _limit_options(p, "evaluate")
    p.add_argument("--detector-fit-split", metavar="SPLIT",
                   help="with --detectors: the split they are fitted on (default: the data's val split, "
                   "else a stratified part of the evaluated split, held out from the evaluation)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the attacks' batches as tasks on the Ray cluster at ADDRESS (alone: start a "
                   "local one); the same per-image results as a local run with the same --batch-size")
    p.add_argument("--ray-cpus", type=float, default=1, metavar="N",
                   help="with --ray: CPUs each task (one batch) holds, and TensorFlow threads in it (default 1)")
    p.add_argument("--ray-gpus", type=float, default=0, metavar="N",
                   help="with --ray: GPUs each task holds, e.g. 0.25 to share one GPU between 4 tasks "
                   "(default 0: CPUs only)")
    p.add_argument("--no-adaptive", action="store_true",
                   help="with --detectors: skip attacking each detector adaptively (the report says so)")
    p.add_argument("--allow-broken-setup", action="store_true",
                   help="evaluate even when the clean predictions look broken (one class for nearly every "
                   "image, or chance-level accuracy); the report then flags it")
    _scan_options(p)
    _input_range_option(p)
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--batch-size", type=int,
                   help="images per attack batch (default: as many as the model's memory footprint allows)")
    p.add_argument("--norm", choices=["inf", "2", "1"],
                   help="the threat model: L-inf (default), L2 or L1 budgets in --eps (L2/L1 defaults: 0.25,0.5,1 "
                   "and 4,8,16); attacks and the suite run in it, and attacks without a version for it are refused")
    p.add_argument(
        "--suite", choices=["standard", "fast", "quick", "plus", "rand"],
        help="add a reference-grade protocol (AutoAttack's standard: APGD-CE, APGD-T, FAB-T, Square; fast: "
        "APGD-CE (8 restarts under L1), APGD-T on MALT's 3 nearest targets with a second start for the "
        "points left near a boundary, Square with 1,000 queries); its per-point worst case becomes the headline",
    )
    p.add_argument("--defenses", help="comma-separated preprocessing defenses, or 'all'; each is attacked non-adaptively and adaptively (params: use --config)")
    p.add_argument("--eot-samples", type=int, help="draws averaged by EOT against randomized defenses (default 8)")
    p.add_argument("--detectors", help="comma-separated detectors, or 'all', to fit and score (params: use --config)")
    p.add_argument("--negative-class", metavar="CLASS",
                   help="the class that means 'no finding' (e.g. notumor): cards count flips into it as missed "
                   "findings, out of it as false alarms (default: the data set's, else a binary model's class 0)")
    p.add_argument("--out", default="egide-report", help="folder for report.json and report.html")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# ---- egide plugins --------------------------------------------------------------------
def _cmd_plugins(args) -> int:

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


def _limit_options(p, verb: str) -> None:
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"{verb} N images of the split, drawn stratified by class under --seed (see --sampling)")
    p.add_argument("--sampling", choices=["stratified", "random", "first"],
                   help="how --limit draws its images: stratified by class (default), random, or the first "
                   "N in folder order")


def _scan_options(p) -> None:
    p.add_argument("--window", metavar="CENTRE,WIDTH",
                   help="DICOM scans: read them through this VOI window instead of the stored one (e.g. 40,400)")
    p.add_argument("--slice-axis", choices=["axial", "coronal", "sagittal"],
                   help="NIfTI volumes: the axis to cut them along (default axial)")
    p.add_argument("--skip-empty-slices", action="store_true", default=None,
                   help="NIfTI volumes: drop slices without tissue")


def _input_range_option(p) -> None:
    p.add_argument(
        "--input-range", metavar="LOW,HIGH",
        help="pixel range the model expects, e.g. 0,255 (default: read from a leading Rescaling or "
        "Normalization layer, else 0,1); images and eps stay in [0, 1] units: 4/255 is 4/255 of the range",
    )
    p.add_argument("--clip", dest="input_range", help=argparse.SUPPRESS)  # the old name
    p.add_argument("--normalize", metavar="MEAN/STD",
                   help="ONNX models: the per-channel (v - mean) / std the model expects after its input range, "
                   "e.g. 0.485,0.456,0.406/0.229,0.224,0.225 (torchvision's); applied inside the classifier")


# ---- egide attack ---------------------------------------------------------------------
def _cmd_attack(args) -> int:
    from egide.lab.evaluation.images import local_source
    from egide.lab.jobs import AttackConfig, DefenseChoice, run_attack

    reg = registry()
    if args.defense is None and (args.defense_param or args.adaptive is not None):
        flag = "--defense-param" if args.defense_param else "--adaptive" if args.adaptive else "--non-adaptive"
        raise InputError(f"{flag} needs --defense NAME: the preprocessing defense to attack")
    defense = None if args.defense is None else DefenseChoice(
        plugin=args.defense, params=dict(parse_param(p) for p in args.defense_param),
        adaptive=args.adaptive is not False)  # adaptive unless told otherwise, as in the API
    config = _validated(AttackConfig, "attack settings", plugin=args.attack, model=args.model, data=args.data,
                        params=dict(parse_param(p) for p in args.param), split=args.split, limit=args.limit,
                        sampling=args.sampling or "stratified", batch_size=args.batch_size, seed=args.seed,
                        target=args.target, defense=defense)
    # Fail fast on bad parameters, before the model loads.
    reg.create("attack", config.plugin, **config.params)
    if defense is not None:
        services.preprocessing_defense(reg, defense.plugin, defense.params)
    clf = Classifier.load(args.model, input_range=parse_range(args.input_range),
                          normalize=parse_normalize(getattr(args, "normalize", None)))
    source = local_source(args.data, clf, reg, window=parse_range(args.window, what="--window", ordered=False),
                          slice_axis=args.slice_axis or "axial", skip_empty_slices=bool(args.skip_empty_slices))
    with _progress_bar(0, config.plugin, disabled=args.no_progress) as progress:
        outcome = run_attack(config, classifier=clf, source=source, registry=reg, progress=progress)
    summary = outcome.summary
    if summary["subset"] and Subset.from_dict(summary["subset"]).warning():
        print(f"WARNING: {Subset.from_dict(summary['subset']).warning()}", file=sys.stderr)
    if source.mixed_sizes:
        print(f"note: the scans differ in size ({source.mixed_sizes[0]}); each was resized to the model's "
              f"input {'x'.join(map(str, clf.input_shape))}", file=sys.stderr)
    out = outcome.result.save(args.out)
    summary["output"] = str(out)
    summary_path = out.with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=2))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, out, summary_path)
    return 0


def _validated(config_type, what: str, **settings):
    """`config_type(**settings)`, or an InputError that names each bad setting."""
    from pydantic import ValidationError

    try:
        return config_type(**settings)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()]
        raise InputError(f"invalid {what}:\n" + "\n".join(lines)) from None


def _print_summary(s: dict, out: Path, summary_path: Path) -> None:
    print(f"{s['attack']} on {s['images']} images ({s['seconds']:.2f} s, {s['images_per_second']} images/s)")
    if s.get("defense"):
        d = s["defense"]
        settings = ", ".join(f"{k}={v}" for k, v in d["params"].items())
        view = "adaptive attack (BPDA/EOT)" if d["adaptive"] else "non-adaptive attack"
        print(f"  defense          {d['plugin']} ({settings}), {view}")
    if s.get("subset"):
        print(f"  images           {Subset.from_dict(s['subset']).sentence()}")
    print(f"  clean accuracy   {s['clean_accuracy']:.2%}")
    print(f"  robust accuracy  {s['robust_accuracy']:.2%}")
    print(f"  success rate     {_pct(s['success_rate'])} of the {s['images'] - s['already_misclassified']} "
          f"images classified right before the attack ({s['already_misclassified']} already misclassified)")
    print(f"  L2    mean {s['l2_mean']:.4g}  max {s['l2_max']:.4g}")
    print(f"  Linf  mean {s['linf_mean']:.4g}  max {s['linf_max']:.4g}")
    print(f"wrote {out} and {summary_path}")


# ---- egide evaluate -------------------------------------------------------------------
def evaluation_config(args):
    """The evaluation settings: the --config file if given, then each flag given on top."""
    from egide.lab.evaluation.pipeline import AttackSpec, EvaluationConfig

    settings: dict = {}
    if args.config:
        path = Path(args.config)
        try:
            settings = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(settings, dict):
            raise InputError(f"{path}: the config must be a JSON object")
    for key in ("model", "data", "split", "limit", "sampling", "seed", "batch_size", "suite",
                "detector_fit_split", "norm", "negative_class"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.eps is not None:
        settings["eps"] = [parse_number(v) for v in args.eps.split(",") if v.strip()]
    if args.eot_samples is not None:
        settings["eot_samples"] = args.eot_samples
    if args.window is not None:
        settings["window"] = parse_range(args.window, what="--window", ordered=False)
    if args.slice_axis is not None:
        settings["slice_axis"] = args.slice_axis
    if args.skip_empty_slices:
        settings["skip_empty_slices"] = True
    if args.allow_broken_setup:
        settings["stop_on_broken_setup"] = False
    if args.no_adaptive:
        settings["adaptive_detectors"] = False
    if args.ray is not None:
        settings["executor"] = {"ray": args.ray, "cpus_per_task": args.ray_cpus,
                                "gpus_per_task": args.ray_gpus}
    elif args.ray_cpus != 1 or args.ray_gpus:
        raise InputError("--ray-cpus and --ray-gpus say what each Ray task holds: add --ray [ADDRESS]")
    if args.input_range is not None:
        settings.pop("clip", None)  # the old name of the field
        settings["input_range"] = parse_range(args.input_range)
    if args.normalize is not None:
        settings["normalize"] = parse_normalize(args.normalize)
    for key in ("defenses", "detectors"):
        names = getattr(args, key)
        if names == "all":
            names = ",".join(_all_of(key))
        if names is not None:
            given = {s.get("plugin"): s for s in settings.get(key, []) if isinstance(s, dict)}
            settings[key] = [given.get(n, {"plugin": n})
                             for n in (n.strip() for n in names.split(",")) if n]
    if args.attacks is not None:
        by_name = {a.plugin: a for a in EvaluationConfig().attacks}
        settings["attacks"] = [
            by_name.get(name, AttackSpec(plugin=name)).model_dump()
            for name in (n.strip() for n in args.attacks.split(",")) if name
        ]
    return _validated(EvaluationConfig, "evaluation settings", **settings)


def _cmd_evaluate(args) -> int:
    from egide.lab.evaluation.pipeline import evaluate

    config = evaluation_config(args)
    with _progress_bar(0, "evaluate", disabled=args.no_progress) as progress:
        report = evaluate(config, progress=progress)
    written = write_report(report, args.out)
    if args.json:
        print(Path(written["report.json"]).read_text())
        return 0
    data = report.data
    print(f"{report.model['name']} on {data['images']} images of {data['source']} "
          f"({data['split'] or 'all'}): clean accuracy {report.clean_accuracy:.1%}")
    if data.get("subset"):
        _print_subset(data["subset"])
    if data.get("detector_fit"):
        print(f"  detectors fitted on {detector_fit_text(data['detector_fit'])}")
    if data.get("resized_from"):
        shape = "x".join(map(str, data["resized_from"]))
        model_shape = "x".join(map(str, report.model["input_shape"]))
        print(f"  note: images were {shape}, resized to the model's input {model_shape}")
    if data.get("mixed_sizes"):
        model_shape = "x".join(map(str, report.model["input_shape"]))
        print(f"  note: the scans differ in size ({data['mixed_sizes']}); each was resized to the "
              f"model's input {model_shape}")
    eps_list = [eps_key(e) for e in config.eps]
    units = Units(report)
    rows = [[f"robust accuracy ({units.norm_label})"] + [f"eps {units.eps(e)}" for e in config.eps]]
    for name in dict.fromkeys(r.attack for r in report.runs if r.purpose == "evaluation"):
        runs = {eps_key(r.eps): r for r in report.runs if r.attack == name and r.eps is not None}
        if runs:
            rows.append([name] + [f"{runs[e].robust_accuracy:.1%}" if e in runs else "-" for e in eps_list])
    rows.append(["worst case"] + [f"{report.worst_case[e]:.1%}" if e in report.worst_case else "-" for e in eps_list])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))
    for found in report.minimal:
        norm = "L2" if found.norm == "2" else "L-inf"
        median = f"median {norm} {np.median(found.values):.4g}" if found.values else "nothing found"
        print(f"  {found.attack}: {len(found.values)} adversarial examples, {median} (minimal perturbations)")
    for check in report.sanity:
        print(f"  [{check_mark(check)}] {check.name}: {check.message}")
    _print_suite(report)
    _print_defenses(report, eps_list)
    _print_detectors(report)
    print(f"wrote {written['report.json']} and {written['report.html']} ({report.seconds:.1f} s)")
    return 0


def _print_subset(subset: dict) -> None:
    """The line that says which images a limit took, and the warning when it left a class out."""
    drawn = Subset.from_dict(subset)
    print(f"  images: {drawn.sentence()}")
    if drawn.warning():
        print(f"  WARNING: {drawn.warning()}")


def _pct(value) -> str:
    return f"{value:.2%}" if value == value else "n/a"  # NaN: nothing to rate


def _all_of(key: str) -> list[str]:
    """Every installed preprocessing defense, or every detector: what `--defenses all` means."""

    reg = registry()
    if key == "defenses":
        return [c.name for c in reg.plugins("defense") if issubclass(c, Preprocessor)]
    return reg.names("detector")


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _print_suite(report) -> None:
    suite = report.suite
    if suite is None:
        return
    asked = "" if suite.ran == suite.protocol else f" (asked: {suite.protocol}; the model is randomized)"
    print(f"suite {suite.ran}{asked}, {Units(report).norm_label}: robust accuracy after each attack, per point")
    members = [m for m in suite.members]
    rows = [["eps"] + [m.ran or f"({m.label})" for m in members] + ["suite"]]
    for r in suite.runs:
        rows.append([Units(report).eps(r.eps)] + [f"{a:.1%}" if m.ran else "-" for a, m in zip(r.after, members)]
                    + [f"{r.robust_accuracy:.1%}"])
    _print_table(rows)
    for m in members:
        if m.note:
            print(f"  note: {m.note}")
    for r in suite.runs:
        if r.masking:
            print(f"  [FLAG] at eps {Units(report).eps(r.eps)}: {r.masking}")


def _print_defenses(report, eps_list: list[str]) -> None:
    if not report.defenses:
        return
    print("defenses, worst case over L-inf attacks: adaptive (non-adaptive)")
    rows = [["defense", "clean"] + [f"eps {e}" for e in eps_list]]
    rows.append(["none", f"{report.clean_accuracy:.1%}"]
                + [f"{report.worst_case[e]:.1%}" if e in report.worst_case else "-" for e in eps_list])
    for d in report.defenses:
        cells = [f"{d.worst_case[e]['adaptive']:.1%} ({d.worst_case[e]['non_adaptive']:.1%})"
                 if e in d.worst_case else "-" for e in eps_list]
        rows.append([d.name, f"{d.clean_accuracy:.1%}"] + cells)
    _print_table(rows)
    for d in report.defenses:
        if d.masking:
            print(f"  [FLAG] {d.name} masks gradients: {d.masking}")


def _print_detectors(report) -> None:
    if not report.detectors:
        return

    det_eps = report.detectors[0].detection_eps
    print(f"detectors, ROC AUC at eps {eps_key(det_eps)} (minimal-perturbation attacks unbounded)")
    attacks = list(dict.fromkeys(r.attack for d in report.detectors for r in d.runs))
    rows = [["detector"] + attacks + ["fit", "scoring"]]
    for d in report.detectors:
        at = {r.attack: r.auc for r in d.runs if r.eps is None or abs(r.eps - det_eps) < 1e-9}
        rows.append([d.name] + [f"{at[a]:.3f}" if a in at else "-" for a in attacks]
                    + [f"{d.fit_seconds:.1f} s", f"{d.score_rate:.0f}/s"])
    _print_table(rows)
    guarded = [d for d in report.detectors if d.guard is not None]
    if not guarded:
        if report.config.get("adaptive_detectors") is False:
            print("detectors not attacked adaptively (--no-adaptive): their numbers hold only "
                  "against attackers who ignore them")
        return
    print("guarded robust accuracy (classified correctly or flagged), adaptive / non-adaptive")
    budgets = list(dict.fromkeys(r.eps for d in guarded for r in d.guard.runs))
    rows = [["detector"] + [f"eps {eps_key(e)}" for e in budgets] + [""]]
    for d in guarded:
        pairs = {p.eps: (p, a) for p, a in d.guard.pairs()}
        cells = [f"{pairs[e][1].guarded_robust_accuracy:.1%} / {pairs[e][0].guarded_robust_accuracy:.1%}"
                 if e in pairs and pairs[e][1] else "-" for e in budgets]
        falls = any(d.guard.falls().values())
        broken = d.guard.threshold_fails()
        rows.append([d.name] + cells + ["MEANINGLESS: flags clean scans" if broken
                                        else "falls to adaptive attack" if falls else ""])
    _print_table(rows)
    for d in guarded:
        if d.guard.threshold_fails():
            print(f"  WARNING: {d.name}: {d.guard.threshold_fails()}")


# ---- egide train ----------------------------------------------------------------------
# ---- egide card ----------------------------------------------------------------------
# Flags that choose what an evaluation runs: with --report the evaluation is read, not run.
EVALUATION_FLAGS = ("config", "model", "data", "split", "attacks", "eps", "limit", "suite", "defenses",
                    "detectors", "norm", "seed", "batch_size", "input_range")


def _cmd_card(args) -> int:
    from egide.lab.evaluation.pipeline import evaluate
    from egide.lab.report.card_build import build_card
    from egide.lab.report.files import write_card

    if args.report:
        given = [f"--{k.replace('_', '-')}" for k in EVALUATION_FLAGS if getattr(args, k, None) is not None]
        if given:
            raise InputError(f"with --report the card reads a finished evaluation; {', '.join(given)} would "
                             "choose a new one: drop them, or drop --report to run the evaluation now")
        out = Path(args.report)
        report = read_report_json(out)
    else:
        config = evaluation_config(args)
        with _progress_bar(0, "evaluate", disabled=args.no_progress) as progress:
            evaluated = evaluate(config, progress=progress)
        out = Path(args.out)
        report = json.loads(Path(write_report(evaluated, out)["report.json"]).read_text())
    started = time.perf_counter()
    certification = None
    if args.certify:
        from egide.lab.evaluation.certification import certify_evaluation

        print(f"certifying {report['data']['images']} images with {args.certify_samples} noisy copies each...")
        certification = certify_evaluation(report, samples=args.certify_samples, sigma=args.certify_sigma)
    card = build_card(report, negative_class=args.negative_class, certification=certification)
    written = write_card(card, out)
    for line in card.summary:
        print(f"  {line}")
    print(f"wrote {written['card.html']}, {written['card.pdf']} and {written['card.json']} "
          f"({time.perf_counter() - started:.1f} s beyond the evaluation)")
    return 0


def read_report_json(folder: Path) -> dict:
    """report.json of a finished evaluation, or a clear error that says what to run."""
    path = folder / "report.json"
    if not path.is_file():
        raise InputError(f"{folder}: no report.json here; run `egide evaluate --out {folder}` first, or drop "
                         "--report to run the evaluation with the card")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable report ({exc}); evaluate again") from None


def _cmd_train(args) -> int:

    from egide.lab.training import save_model, train_classifier

    reg = registry()
    args.architecture = args.architecture or services.default_model(reg)
    args.data = args.data or services.default_data(reg, args.architecture)
    source = reg.get("model", args.architecture)
    if not callable(getattr(source, "build", None)):
        raise InputError(f"model '{args.architecture}' has no architecture to train (no build())")
    recipe = {**getattr(source, "recipe", {})}
    for key in ("epochs", "batch_size", "learning_rate", "seed"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    train = load_data(args.data, split="train")
    try:
        val = load_data(args.data, split="val")
    except DataError:
        # No validation split: hold out 15% of train, the same images every run.
        order = np.random.default_rng(recipe.get("seed", 0)).permutation(len(train))
        cut = max(1, len(train) * 15 // 100)
        val, train = train.subset(order[:cut]), train.subset(order[cut:])
    model = source.build(train.image_shape, train.num_classes)
    print(f"training {args.architecture} on {len(train)} images of {args.data} "
          f"({len(val)} for validation): {recipe}", flush=True)

    bar = _progress_bar(0, "epoch 1", disabled=args.no_progress)
    with bar as on_batch:
        def on_epoch(epoch, epochs, m):
            line = (f"epoch {epoch}/{epochs}  loss {m.get('loss', float('nan')):.4f}  "
                    f"accuracy {m.get('accuracy', 0):.2%}  val accuracy {m.get('val_accuracy', 0):.2%}  "
                    f"({m['seconds']:.0f} s)")
            if bar.bar.disable:
                print(line, flush=True)
            else:
                bar.bar.write(line)
                bar.bar.reset()
                on_batch(0, 0, f"epoch {epoch + 1}")

        result = train_classifier(model, train, val, on_epoch=on_epoch,
                                  on_batch=lambda done, total: on_batch(done, total), **recipe)
    out = save_model(result.model, args.out)
    print(f"best epoch {result.best_epoch}: val accuracy {result.best_val_accuracy:.2%}")
    try:
        test = load_data(args.data, split="test")
    except DataError:
        test = None
    if test is not None:
    
        clf = Classifier.from_keras(result.model)
        accuracy = float((clf.predict(test.x) == test.y).mean())
        print(f"test accuracy {accuracy:.2%} on {len(test)} images")
    print(f"wrote {out} ({result.seconds:.0f} s)")
    return 0


# ---- egide defend ---------------------------------------------------------------------
def _cmd_defend(args) -> int:
    from egide.lab.evaluation.images import local_source
    from egide.lab.jobs import DefendConfig, train_defended, trainer_of
    from egide.lab.training import save_model

    reg = registry()
    config = _validated(DefendConfig, "defense settings", plugin=args.defense, model=args.model, data=args.data,
                        params=dict(parse_param(p) for p in args.param), limit=args.limit, seed=args.seed)
    defense = trainer_of(config, reg)  # fail fast on bad parameters, before the model loads
    out = Path(args.out)
    if out.suffix not in (".keras", ".h5"):
        raise InputError(f"--out {out}: save the defended model as .keras (or .h5)")
    clf = Classifier.load(args.model, input_range=parse_range(args.input_range),
                          normalize=parse_normalize(getattr(args, "normalize", None)))
    checkpoint = None if args.no_checkpoint else Path(args.checkpoint or f"{out}.ckpt")
    print(f"{defense.name} on {clf.name}, the train split of {args.data}, params "
          f"{defense.params.model_dump(mode='json')}", flush=True)
    if checkpoint is not None and checkpoint.exists():
        print(f"resuming from the checkpoint {checkpoint}", flush=True)

    bar = _progress_bar(0, defense.name, disabled=args.no_progress)
    shown = 0
    with bar as on_batch:
        bar.bar.unit = "batch"

        def progress(done, total, label):
            nonlocal shown
            history = getattr(defense, "history", [])
            while shown < len(history):  # an epoch finished: one line for it
                m = history[shown]
                line = (f"epoch {m['epoch']}/{defense.params.epochs}  loss {m['loss']:.4f}  "
                        f"val clean {m['val_clean_accuracy']:.1%}  "
                        f"val adversarial {m['val_adversarial_accuracy']:.1%}  ({m['seconds']:.0f} s)")
                if bar.bar.disable:
                    print(line, flush=True)
                else:
                    bar.bar.write(line)
                shown += 1
            on_batch(done, total, label)

        try:
            outcome = train_defended(config, classifier=clf, source=local_source(args.data, clf, reg),
                                     registry=reg, checkpoint=checkpoint, progress=progress, trainer=defense)
        except KeyboardInterrupt:
            if checkpoint is not None and checkpoint.exists():
                print(f"egide: the finished epochs are kept in {checkpoint}; rerun the same "
                      "command to resume", file=sys.stderr)
            raise
    saved = save_model(outcome.trained.model, out)
    best = defense.best
    print(f"trained on {len(outcome.train)} images, validated on "
          f"{len(outcome.val) if outcome.val is not None else 'a 10% hold-out of them'}")
    print(f"best epoch {best['epoch']}: val clean {best['val_clean_accuracy']:.2%}, val adversarial "
          f"{best['val_adversarial_accuracy']:.2%} (PGD-{defense.params.val_steps} at eps "
          f"{defense.params.eps:.4g})")
    try:
        test = for_classifier(load_data(args.data, split="test"), outcome.trained)
    except DataError:
        test = None
    if test is not None:
        accuracy = float((outcome.trained.predict(test.x) == test.y).mean())
        print(f"test clean accuracy {accuracy:.2%} on {len(test)} images")
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()  # the saved model is the result now
    print(f"wrote {saved} ({outcome.seconds:.0f} s); measure its robustness with "
          f"`egide evaluate --model {saved}`")
    return 0


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

    def update(self, done: int, total: int, label: str | None = None) -> None:
        if self.bar.disable:
            return
        if total != self.bar.total:
            self.bar.total = total
        if label is not None and label != self.bar.desc:
            self.bar.set_description_str(label, refresh=False)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc) -> None:
        self.bar.close()


# ---- egide serve ----------------------------------------------------------------------
def _cmd_serve(args) -> int:
    # The one place the lab reaches a front end: the command line starts the web one.
    from egide.web.serve import serve

    host = args.host or os.environ.get("EGIDE_HOST") or "127.0.0.1"
    port = args.port if args.port is not None else int(os.environ.get("EGIDE_PORT") or DEFAULT_PORT)
    token = args.token or os.environ.get("EGIDE_API_TOKEN") or os.environ.get("EGIDE_TOKEN") or None
    services.check_exposure(host, token)
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    serve(host, port, instance=args.instance, token=token, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
