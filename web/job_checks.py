"""What the API checks in a job request before it is queued, by kind: the request model (pydantic,
the lab's config plus the server's own fields), then what only the server knows: its named models
and data sets, their splits and classes, its bound on images per job, and each plugin's parameters.
A bad job is a 422 that names each bad field, never a job that fails later."""

from __future__ import annotations

import difflib

from flask import current_app
from pydantic import ValidationError

from egide.core.errors import EgideError, InputError, ParameterError, PluginNotFoundError
from egide.lab import services
from egide.lab.data.splits import ALL, match

from .problems import field_error, from_parameter_error, from_pydantic, validation_problem
from .schemas import AttackJob, DefendJob, EvaluateJob

JOB_KINDS = {"attack": AttackJob, "evaluate": EvaluateJob, "defend": DefendJob}


def state():
    return current_app.extensions["egide"]


def validated_job(body) -> tuple[str, dict]:
    """(kind, the request to store) for a job body, or a 422 naming each bad field."""
    if not isinstance(body, dict):
        raise validation_problem([field_error([], "the body must be a JSON object", "model_type")])
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in JOB_KINDS:
        raise validation_problem([field_error(
            ["kind"], f"must be one of {', '.join(map(repr, JOB_KINDS))}", "literal_error",
            kind if isinstance(kind, str) else None)])
    try:
        job = JOB_KINDS[kind].model_validate(body)
    except ValidationError as exc:
        raise from_pydantic(exc) from None
    if kind in ("attack", "defend"):
        _fill_defaults(job)
    check = {"attack": _check_attack, "evaluate": _check_evaluation, "defend": _check_defend}[kind]
    return kind, check(job)


def _fill_defaults(job) -> None:
    """A model and data set left out: what the installed model plugins declare (the demo)."""
    reg, errors = state().registry, []
    if job.model is None:
        try:
            job.model = services.default_model(reg)
        except EgideError as exc:
            errors.append(field_error(["model"], str(exc), "no_default"))
    if job.data is None:
        try:
            job.data = services.default_data(reg, job.model)
        except EgideError as exc:
            errors.append(field_error(["data"], str(exc), "no_default"))
    if errors:
        raise validation_problem(errors)


def _defense_class(name: str, loc: list, trainer: bool):
    """The defense plugin class, or a 422: unknown, or the wrong sort for this job (a trainer
    where a preprocessor is wanted, or the reverse) — read from `needs_training_data`."""
    st = state()
    try:
        cls = st.registry.get("defense", name)
    except PluginNotFoundError as exc:
        raise validation_problem([field_error(loc, str(exc), "unknown_plugin", name)]) from None
    if bool(getattr(cls, "needs_training_data", False)) != trainer:
        msg = (f"{name} trains a new model: run it as a job of kind 'defend', then attack the model it makes"
               if not trainer else
               f"{name} transforms inputs and trains nothing: give it as an attack job's 'defense'")
        raise validation_problem([field_error(loc, msg, "wrong_defense_kind", name)])
    return cls


def _check_attack(job: AttackJob) -> dict:
    st = state()
    errors = _check_sources(job.model, job.data, job.split, job.limit, ())
    if errors:
        raise validation_problem(errors)
    if job.limit is None:  # "all": as many as this server attacks per job
        job.limit = int(current_app.config["EGIDE_MAX_IMAGES"])
    try:
        st.registry.get("attack", job.plugin)
    except PluginNotFoundError as exc:
        raise validation_problem([field_error(["plugin"], str(exc), "unknown_plugin", job.plugin)]) from None
    try:
        attack = st.registry.create("attack", job.plugin, **job.params)  # the plugin validates
    except ParameterError as exc:
        raise from_parameter_error(exc) from None
    _check_classes(job.model, job.data, ("data",))
    if job.target is not None and not attack.targeted:  # the rule of services.targets, said now
        raise validation_problem([field_error(
            ["target"], "a target was given to an untargeted attack; set params.targeted to true "
            "to aim at it, or leave target out", "untargeted", job.target)])
    if attack.budget == "fixed":
        # An eps beyond the model's input range is a unit mistake: say so now, not in a failed
        # job. (Loads the model once; it stays cached for the jobs.)
        try:
            attack._check_budget(st.resources.classifier(job.model))
        except ParameterError as exc:
            raise validation_problem([field_error(["params", "eps"], str(exc), "budget", attack.params.eps)]) from None
    doc = job.model_dump(mode="json")
    doc["params"] = attack.params.model_dump(mode="json")
    if not attack.targeted and job.target is not None:
        raise validation_problem([field_error(["target"], "target labels need params.targeted = true")])
    if job.defense is not None:
        _defense_class(job.defense.plugin, ["defense", "plugin"], trainer=False)
        try:
            defense = st.registry.create("defense", job.defense.plugin, **job.defense.params)
        except ParameterError as exc:
            raise from_parameter_error(exc, ("defense", "params")) from None
        doc["defense"]["params"] = defense.params.model_dump(mode="json")
    return doc


def _check_defend(job: DefendJob) -> dict:
    st = state()
    errors = _check_sources(job.model, job.data, None, job.limit, ())
    if not errors and match("train", st.resources.splits(job.data)) is None:
        errors.append(field_error(["data"], f"{job.data} has no train split to train on", "no_train_split",
                                  job.data))
    if errors:
        raise validation_problem(errors)
    _defense_class(job.plugin, ["plugin"], trainer=True)
    try:
        trainer = st.registry.create("defense", job.plugin, **job.params)
    except ParameterError as exc:
        raise from_parameter_error(exc) from None
    _check_classes(job.model, job.data, ("data",))
    doc = job.model_dump(mode="json")
    doc["params"] = trainer.params.model_dump(mode="json")
    return doc


def _check_evaluation(job: EvaluateJob) -> dict:
    from egide.lab.evaluation.pipeline import check_attack as check_spec

    st = state()
    cfg = job.config
    errors = _check_sources(cfg.model, cfg.data, cfg.split, cfg.limit, ("config",))
    if cfg.executor is not None:  # a client may not point the server at a cluster of its choosing
        errors.append(field_error(["config", "executor"], "the server decides where its jobs run; "
                                  "leave executor out", "not_allowed", cfg.executor))
    for i, spec in enumerate(cfg.attacks):
        try:
            check_spec(st.registry, spec, cfg.norm)
        except PluginNotFoundError as exc:
            errors.append(field_error(["config", "attacks", i, "plugin"], str(exc), "unknown_plugin", spec.plugin))
        except ParameterError as exc:
            p = from_parameter_error(exc, ("config", "attacks", i, "params"))
            errors.extend(p.errors)
    for kind, specs in (("defense", cfg.defenses), ("detector", cfg.detectors)):
        for i, spec in enumerate(specs):
            errors.extend(_plugin_spec_errors(kind, spec.plugin, spec.params, ("config", kind + "s", i)))
    if cfg.limit is None:  # "all": as many as this server evaluates per job
        cfg.limit = int(current_app.config["EGIDE_MAX_IMAGES"])
    if cfg.detectors and not errors:
        errors.extend(_detector_fit_errors(cfg))
    if errors:
        raise validation_problem(errors)
    _check_classes(cfg.model, cfg.data, ("config", "data"))
    if cfg.negative_class is not None:
        _check_negative_class(cfg.data, cfg.split, cfg.negative_class)
    return job.model_dump(mode="json")


def _check_negative_class(data: str, split, negative: str) -> None:
    """A no-finding class the data does not have: a 422 now, not a job that fails before its attacks."""
    try:
        names = list(state().resources.dataset(data, split).class_names)
    except EgideError:
        return  # the data's own problem: the job reports it with its full message
    if negative not in names:
        raise validation_problem([field_error(["config", "negative_class"], f"{data} has the classes "
                                              f"{', '.join(names)}; name one of them", "unknown_class", negative)])


def _detector_fit_errors(cfg) -> list[dict]:
    """Detectors that could not be fitted as configured: a 422 now, never a job that fails later."""
    from egide.lab.evaluation.images import fit_split_of, held_out_problem

    st = state()
    loc = ["config", "detector_fit_split"]
    try:
        fit_split = fit_split_of(cfg, list(st.resources.splits(cfg.data)))
    except InputError as exc:
        return [field_error(loc, str(exc).removeprefix("detector_fit_split: "), "unknown_split",
                            cfg.detector_fit_split)]
    total = st.resources.split_size(cfg.data, cfg.split) if fit_split is None else None
    problem = held_out_problem(cfg, total) if total is not None else None
    return [field_error(loc, problem, "too_few_images", cfg.detector_fit_split)] if problem else []


def _plugin_spec_errors(kind: str, name: str, params: dict, loc: tuple) -> list[dict]:
    """Field errors of one {plugin, params} entry of an evaluation (empty when it is fine).
    An evaluation's defenses are preprocessors; a trainer makes a model in a defend job."""
    st = state()
    try:
        cls = st.registry.get(kind, name)
    except PluginNotFoundError as exc:
        return [field_error([*loc, "plugin"], str(exc), "unknown_plugin", name)]
    if kind == "defense" and getattr(cls, "needs_training_data", False):
        return [field_error([*loc, "plugin"], f"{name} trains a new model: run it as a job of kind "
                            "'defend', then evaluate the model it makes", "wrong_defense_kind", name)]
    try:
        st.registry.create(kind, name, **params)
    except ParameterError as exc:
        return from_parameter_error(exc, (*loc, "params")).errors
    return []


def _check_classes(model: str, data: str, loc: tuple) -> None:
    """An uploaded data set whose classes do not match the model: a 422 now, not a failed job."""
    st = state()
    meta = st.resources.uploads.dataset(data) if st.resources.uploads else None
    if meta is None:
        return
    names = list(meta.get("class_names") or ())
    k = st.resources.classifier(model).num_classes
    guessed = names == [str(i) for i in range(len(names))]
    if len(names) != k and not (guessed and len(names) < k):
        raise validation_problem([field_error(
            list(loc), f"{data} has {len(names)} classes ({', '.join(names)}) but {model} outputs {k}",
            "class_mismatch", data)])


def _check_sources(model: str, data: str, split, limit, prefix: tuple) -> list[dict]:
    """Over the network only named models and data sets are accepted (never a server path)."""
    st = state()
    errors = []
    if model not in st.resources.model_names():
        errors.append(field_error([*prefix, "model"], unknown("model", model, st.resources.model_names()),
                                  "unknown_model", model))
    if data not in st.resources.dataset_names():
        errors.append(field_error([*prefix, "data"], unknown("data set", data, st.resources.dataset_names()),
                                  "unknown_dataset", data))
    else:
        splits = st.resources.splits(data)
        if split is not None and splits and split.lower() != ALL and match(split, splits) is None:
            errors.append(field_error([*prefix, "split"], f"{data} has the splits {', '.join(splits)}",
                                      "unknown_split", split))
    most = current_app.config["EGIDE_MAX_IMAGES"]
    if limit is not None and limit > most:
        errors.append(field_error([*prefix, "limit"], f"at most {most} images per job on this server",
                                  "less_than_equal", limit))
    return errors


def unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"no {what} named {name!r}.{hint} Known: {', '.join(known) or 'none'}"
