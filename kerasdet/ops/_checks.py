"""Input checks shared by the ops: clear errors that name the argument, its shape and what was expected."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_FLOAT_KINDS = "fiu"


def as_float_tensor(value, name: str, dtype=tf.float32) -> tf.Tensor:
    """Converts `value` to a float tensor, raising TypeError naming `name` for non-numeric input."""
    if isinstance(value, tf.Tensor) or hasattr(value, "dtype") and not isinstance(value, np.ndarray):
        t = tf.convert_to_tensor(value)
        if not (t.dtype.is_floating or t.dtype.is_integer):
            raise TypeError(f"`{name}` must hold numbers; got a tensor of dtype {t.dtype.name}")
        return tf.cast(t, dtype) if t.dtype != dtype else t
    arr = np.asarray(value)
    if arr.dtype.kind not in _FLOAT_KINDS:
        raise TypeError(f"`{name}` must hold numbers; got {type(value).__name__} of dtype {arr.dtype}")
    return tf.convert_to_tensor(arr, dtype=dtype)


def check_last_dim(t: tf.Tensor, name: str, size: int, shape_hint: str) -> None:
    """Checks statically (when known) that the last dimension of `t` is `size`."""
    if t.shape.rank is None:
        return
    if t.shape.rank == 0 or (t.shape[-1] is not None and t.shape[-1] != size):
        raise ValueError(f"`{name}` must have shape {shape_hint}; got shape {tuple(t.shape)}")


def check_rank(t: tf.Tensor, name: str, ranks, shape_hint: str) -> None:
    """Checks statically (when known) that `t` has one of `ranks`."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if t.shape.rank is not None and t.shape.rank not in ranks:
        raise ValueError(f"`{name}` must have shape {shape_hint}; got shape {tuple(t.shape)} (rank {t.shape.rank})")
