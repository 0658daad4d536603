"""Errors a user can act on. Each message says what is wrong and how to fix it."""


class EgideError(Exception):
    """Base of every error Égide raises on purpose (the CLI prints these without a traceback)."""


class PluginNotFoundError(EgideError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class PluginLoadError(EgideError):
    """A plugin could not be loaded (raised only in strict mode; otherwise recorded)."""


class PluginConflictError(EgideError):
    """Two plugins registered the same kind and name."""


class ParameterError(EgideError, ValueError):
    """A plugin parameter broke its rule. `errors` lists (field, rule, value) triples."""

    def __init__(self, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.errors = errors or []


class InputError(EgideError, ValueError):
    """Images, labels or targets given to a plugin or classifier are unusable."""


class ModelError(EgideError, ValueError):
    """A model file is missing, unreadable or not a usable classifier."""


class DataError(EgideError, ValueError):
    """A data set is missing, empty, corrupt or does not fit the model."""
