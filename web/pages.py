"""The lab page: server-rendered, its attack forms generated from each plugin's JSON schema."""

from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, current_app, render_template

from egide.lab.schema import SchemaRenderError, form_fields
from egide.lab.evaluation.pipeline import DEFAULT_EPS_BY_NORM, NORM_NAMES
from egide.lab.evaluation.suite import PROTOCOLS
from egide.lab.report.model import eps_key
from egide.lab.services import default_pair, quick_attacks

pages = Blueprint("pages", __name__, template_folder="templates")


def _entry(cls) -> dict:
    """What the page needs of one plugin: its name and title, and its form fields generated from
    its parameter schema (or why they could not be)."""
    try:
        fields = form_fields(cls.schema())
        problem = None
    except SchemaRenderError as exc:
        fields, problem = [], str(exc)
    except Exception as exc:  # a plugin whose schema cannot even be built: show, don't crash
        fields, problem = [], f"its parameter schema could not be built: {type(exc).__name__}: {exc}"
    return {"name": cls.name, "title": cls.title, "description": cls.summary(),
            "version": cls.version, "fields": fields, "problem": problem}


@pages.get("/")
def index():
    st = current_app.extensions["egide"]
    reg = st.registry
    attacks = [_entry(cls) for cls in reg.plugins("attack")]
    # Defenses split by what they declare: preprocessors go in front of an attacked model,
    # trainers (needs_training_data) make a new model in a defend job.
    defenses = [_entry(cls) for cls in reg.plugins("defense") if not getattr(cls, "needs_training_data", False)]
    trainers = [_entry(cls) for cls in reg.plugins("defense") if getattr(cls, "needs_training_data", False)]
    detectors = [_entry(cls) for cls in reg.plugins("detector")]
    uploads = st.resources.uploads
    models = list(reg.plugins("model")) + [
        SimpleNamespace(name=m["name"], title=m["title"]) for m in (uploads.models() if uploads else [])]
    datasets = list(reg.plugins("dataset")) + [
        SimpleNamespace(name=d["name"], title=d["title"], splits=tuple(d.get("splits") or ()))
        for d in (uploads.datasets() if uploads else [])]
    model_default, data_default = default_pair(models, datasets)
    st.resources.warm(model_default, data_default, "test")  # loaded while the user fills a form
    return render_template(
        "index.html",
        attacks=attacks,
        defenses=defenses,
        trainers=trainers,
        detectors=detectors,
        models=models,
        datasets=datasets,
        model_default=model_default,
        data_default=data_default,
        default_attack=_quickest_attack(reg, attacks),
        quick_attacks=quick_attacks(reg),
        suites=list(PROTOCOLS),
        norms=[{"value": norm, "label": NORM_NAMES[norm], "eps": ", ".join(eps_key(e) if norm == "inf" else f"{e:g}"
                                                                          for e in eps)}
               for norm, eps in DEFAULT_EPS_BY_NORM.items()],
        failures=reg.failures,
        token_required=bool(current_app.config.get("EGIDE_TOKEN")),
    )


def _quickest_attack(reg, attacks) -> str | None:
    """Preselect a single-step attack (it answers in a second), as declared by the plugin."""
    quick = [cls.name for cls in reg.plugins("attack") if getattr(cls, "single_step", False)]
    return quick[0] if quick else (attacks[0]["name"] if attacks else None)
