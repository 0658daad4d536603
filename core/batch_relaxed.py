"""tf.function that traces once for every batch size.

With `reduce_retracing=True` alone, TensorFlow traces the first call at the batch's exact shape
and relaxes the batch dimension only when another shape comes, so a run ending in a part-batch
traced every graph twice (seconds per attack). Here the first call already traces with the batch
dimension unknown: that of the first argument, and of every array argument of the same leading
size (labels, per-image seeds). Other arguments keep the types tf.function would see.
"""
from __future__ import annotations

from typing import Any, Callable


def batch_relaxed_function(python_function: Callable, **options) -> "BatchRelaxedFunction":
    """`python_function` as a tf.function (reduce_retracing=True unless told otherwise) whose
    first trace accepts any batch size."""
    import tensorflow as tf

    options.setdefault("reduce_retracing", True)
    return BatchRelaxedFunction(tf.function(python_function, **options))


class BatchRelaxedFunction:
    def __init__(self, function):
        self.function = function
        self._relaxed = False

    def __call__(self, *args, **kwargs):
        if not self._relaxed and args and _leading_size(args[0]) is not None:
            relax = _relaxer(_leading_size(args[0]))
            self.function.get_concrete_function(*map(relax, args), **{k: relax(v) for k, v in kwargs.items()})
        self._relaxed = True
        return self.function(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # experimental_get_tracing_count and the rest
        return getattr(self.function, name)


def _leading_size(value) -> int | None:
    shape = getattr(value, "shape", None)
    if not hasattr(value, "dtype") or shape is None or len(shape) == 0 or shape[0] is None:
        return None
    return int(shape[0])


def _relaxer(batch: int) -> Callable:
    import tensorflow as tf

    def relax_one(value):  # variables are captured as they are; arrays and tensors relax
        if isinstance(value, tf.Variable) or _leading_size(value) != batch:
            return value
        return tf.TensorSpec((None, *value.shape[1:]), tf.as_dtype(value.dtype))

    return lambda value: tf.nest.map_structure(relax_one, value)
