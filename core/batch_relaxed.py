"""tf.function that traces once for every batch size.

With `reduce_retracing=True` alone, TensorFlow traces the first call at the batch's exact shape
and relaxes the batch dimension only when a second shape arrives. Every run whose last batch is a
part-batch (12 images in batches of 5) therefore traces its graph twice, which costs seconds per
attack on small jobs (Square and FAB trace for several seconds). Here the first call traces a
graph whose batch dimension is unknown; later calls of any batch size reuse it.

The batch dimension is the first argument's leading dimension; every array argument whose leading
dimension equals it is relaxed with it (labels, per-image seeds). Python values, scalars and
tensors of other leading sizes keep their exact types, as tf.function would see them.
"""
from __future__ import annotations

from typing import Any, Callable


def batch_relaxed_function(python_function: Callable, **tf_function_options) -> "BatchRelaxedFunction":
    """`python_function` as a tf.function (with `reduce_retracing=True` unless told otherwise)
    whose first trace already accepts any batch size."""
    import tensorflow as tf

    tf_function_options.setdefault("reduce_retracing", True)
    return BatchRelaxedFunction(tf.function(python_function, **tf_function_options))


class BatchRelaxedFunction:
    """Calls a tf.function, first tracing it with the batch dimension unknown."""

    def __init__(self, function):
        self.function = function
        self._relaxed_once = False

    def __call__(self, *args, **kwargs):
        if not self._relaxed_once:
            batch = _leading_dimension(args[0]) if args else None
            if batch is not None:
                relax = _relaxer(batch)
                self.function.get_concrete_function(*map(relax, args),
                                                    **{k: relax(v) for k, v in kwargs.items()})
            self._relaxed_once = True
        return self.function(*args, **kwargs)

    def experimental_get_tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.function, name)


def _leading_dimension(value) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] is None or not hasattr(value, "dtype"):
        return None
    return int(shape[0])


def _relaxer(batch: int) -> Callable:
    import tensorflow as tf

    def relax_one(value):
        # Variables and resources are captured as they are; only plain arrays and tensors relax.
        if isinstance(value, tf.Variable) or _leading_dimension(value) != batch:
            return value
        return tf.TensorSpec((None,) + tuple(value.shape[1:]), tf.as_dtype(value.dtype))

    def relax(value):
        return tf.nest.map_structure(relax_one, value)

    return relax
