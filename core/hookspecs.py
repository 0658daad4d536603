"""The hooks a plugin module may implement. Each receives a `register(cls)` callable."""

import pluggy

PROJECT = "egide"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def egide_register_attacks(register):
    """Register Attack subclasses by calling register(cls) once per class."""


@hookspec
def egide_register_defenses(register):
    """Register Defense subclasses by calling register(cls) once per class."""


@hookspec
def egide_register_detectors(register):
    """Register Detector subclasses by calling register(cls) once per class."""


@hookspec
def egide_register_datasets(register):
    """Register DatasetSource subclasses (named data sets) by calling register(cls)."""


@hookspec
def egide_register_models(register):
    """Register ModelSource subclasses (named models) by calling register(cls)."""


@hookspec
def egide_register_model_formats(register):
    """Register ModelFormat subclasses (model files besides Keras's, e.g. ONNX) by calling register(cls)."""
