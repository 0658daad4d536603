"""The lab page: server-rendered, its attack forms generated from each plugin's JSON schema."""

from __future__ import annotations

from types import SimpleNamespace

from flask import Blueprint, current_app, render_template

from egide.core.schema import SchemaRenderError, form_fields

pages = Blueprint("pages", __name__, template_folder="templates")

DEMO_MODEL, DEMO_DATA = "brain-tumor-cnn", "brain-tumor-phantom"


@pages.get("/")
def index():
    st = current_app.extensions["egide"]
    reg = st.registry
    attacks = []
    for cls in reg.plugins("attack"):
        try:
            fields = form_fields(cls.schema())
            problem = None
        except SchemaRenderError as exc:
            fields, problem = [], str(exc)
        except Exception as exc:  # a plugin whose schema cannot even be built: show, don't crash
            fields, problem = [], f"its parameter schema could not be built: {type(exc).__name__}: {exc}"
        attacks.append({"name": cls.name, "title": cls.title, "description": cls.summary(),
                        "version": cls.version, "fields": fields, "problem": problem})
    uploads = st.resources.uploads
    models = list(reg.plugins("model")) + [
        SimpleNamespace(name=m["name"], title=m["title"]) for m in (uploads.models() if uploads else [])]
    datasets = list(reg.plugins("dataset")) + [
        SimpleNamespace(name=d["name"], title=d["title"], splits=tuple(d.get("splits") or ()))
        for d in (uploads.datasets() if uploads else [])]
    names = {c.name for c in models}
    return render_template(
        "index.html",
        attacks=attacks,
        models=models,
        datasets=datasets,
        model_default=DEMO_MODEL if DEMO_MODEL in names else (models[0].name if models else None),
        data_default=DEMO_DATA if DEMO_DATA in {c.name for c in datasets} else (datasets[0].name if datasets else None),
        default_attack="fgsm" if "fgsm" in reg.names("attack") else (attacks[0]["name"] if attacks else None),
        failures=reg.failures,
        token_required=bool(current_app.config.get("EGIDE_TOKEN")),
    )
