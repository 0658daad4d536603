"""A lower bound beside the attacks' upper bounds: randomized-smoothing certification (Cohen,
Rosenfeld & Kolter 2019) of the images a finished evaluation took, at its budgets.

The certificate is about the smoothed classifier (the model voting over Gaussian-noise copies), not
the bare model: the card says so, and quotes beside it the attacks' adaptive bound on that same
smoothed model when the evaluation attacked it as a defense with the same sigma.

Budgets become L2 radii so that the certified ball holds the attacker's whole ball:
  - L2: the budget itself;
  - L1: the budget itself (a change of L1 size e has L2 size at most e);
  - L-inf: e * sqrt(d), the L2 ball around the L-inf cube of d values (usually too large to
    certify: the card then shows 0%, an honest bound, not a missing one).
"""

from __future__ import annotations

import math
import time

import numpy as np

from egide.core.classifier import Classifier
from egide.core.errors import InputError
from egide.core.registry import Registry
from egide.core.registry import registry as default_registry
from egide.lab.evaluation.pipeline import EvaluationConfig, evaluated_images
from egide.lab.report.card import CertifiedRadius, Certification, Interval
from egide.lab.report.identity import images_sha256
from egide.lab.report.intervals import clopper_pearson
from egide.lab.report.model import eps_key

DEFAULT_SIGMA = 0.25


def certify_evaluation(report: dict, *, samples: int = 1000, n0: int = 100, alpha: float = 0.001,
                       sigma: float | None = None, registry: Registry | None = None) -> Certification:
    """Certify the evaluated images of `report` (report.json's content), reloaded from its config."""
    started = time.perf_counter()
    reg = registry or default_registry()
    config = EvaluationConfig(**report["config"])
    defense, evaluated = _certifying_defense(reg, report, sigma)
    clf = Classifier.load(config.model, input_range=config.input_range, normalize=config.normalize)
    images = evaluated_images(config, clf, reg)
    recorded = report["data"].get("images_sha256")
    if recorded and images_sha256(images.x) != recorded:
        raise InputError("the images read now are not the ones the evaluation took (their SHA-256 differs): "
                         "the data changed since; certify right after evaluating, or evaluate again")
    cert = defense.certify(clf, images.x, n0=n0, n=samples, alpha=alpha, seed=config.seed)
    y, n = images.y, len(images.y)
    norm = str(config.norm)
    values = int(np.prod(images.x.shape[1:]))
    radii = []
    for eps in config.eps:
        radius = eps * math.sqrt(values) if norm == "inf" else eps
        key = eps_key(eps)
        held = int(np.sum((cert.label == y) & (cert.radius >= radius)))
        bound = None
        if evaluated is not None and key in evaluated["worst_case_robust_accuracy"]:
            bound = Interval.of(clopper_pearson(round(evaluated["worst_case_robust_accuracy"][key]["adaptive"] * n), n))
        radii.append(CertifiedRadius(key=key, radius=float(radius), certified=Interval.of(clopper_pearson(held, n)),
                                     attack_bound=bound))
    rule = {"inf": f"an L∞ budget e becomes the L2 radius e·√{values} = e·{math.sqrt(values):.4g}, the ball "
                   "around the whole L∞ cube",
            "2": "the L2 budgets themselves", "1": "the L1 budget itself (an L1 change of size e has L2 size "
                                                  "at most e)"}[norm]
    abstained = int(np.sum(cert.label < 0))
    return Certification(
        defense=f"{defense.name} with sigma = {cert.sigma:g}: the model voting over Gaussian-noise copies, "
                "not the bare model", sigma=cert.sigma, n0=n0, n=samples, alpha=alpha,
        abstained=Interval.of(clopper_pearson(abstained, n)), radii=radii, radius_rule=rule,
        seconds=time.perf_counter() - started)


def _certifying_defense(reg: Registry, report: dict, sigma: float | None):
    """(a defense that certifies, the report's evaluation of it with the same sigma or None)."""
    able = [cls for cls in reg.plugins("defense") if callable(getattr(cls, "certify", None))]
    if not able:
        raise InputError("no installed defense can certify (randomized smoothing does): --certify needs one")
    names = {cls.name for cls in able}
    for d in report.get("defenses", []):
        plugin, params = d["defense"]["plugin"], d["defense"].get("params", {})
        if plugin in names and (sigma is None or math.isclose(params.get("sigma", -1), sigma)):
            return reg.create("defense", plugin, **params), d
    # Without an evaluated smoothing to certify, Cohen et al.'s smallest noise level (0.25): a
    # plugin's default tuned for attacks (a few grey levels) certifies radii too small to matter.
    return reg.create("defense", able[0].name, sigma=DEFAULT_SIGMA if sigma is None else sigma), None
