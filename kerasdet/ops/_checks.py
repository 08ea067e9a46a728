"""Input checks shared by the ops: clear errors that name the argument, its shape and what was expected."""

from __future__ import annotations

import math
import numbers

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


_ROIS_SHAPE = "[B, R, 4] (x1, y1, x2, y2 in input pixels)"


def rois_tensor(value, features, name: str = "rois") -> tf.Tensor:
    """`value` as the float32 rois `[B, R, 4]` of the RoI ops, checked against `features [B, H, W, C]`.

    Raises TypeError naming `name` for non-numeric input, and ValueError for a static shape other than
    `[B, R, 4]` or a static batch size other than that of `features`.
    """
    r = as_float_tensor(value, name)
    check_rank(r, name, 3, _ROIS_SHAPE)
    check_last_dim(r, name, 4, _ROIS_SHAPE)
    fb = features.shape[0] if features.shape.rank is not None else None
    rb = r.shape[0] if r.shape.rank is not None else None
    if fb is not None and rb is not None and fb != rb:
        raise ValueError(
            f"`{name}` must have the batch size of `features`; got {name} shape {tuple(r.shape)} "
            f"and features shape {tuple(features.shape)}"
        )
    return r


# --------------------------------------------------------------------------------------------------
# Python arguments (sizes, scales, flags) of the ops and the layers over them


class PairLengthError(ValueError, TypeError):
    """A pair argument (such as `output_size`) given with the wrong number of entries.

    A ValueError, and also a TypeError because the RoIAlign ops and layers have always raised one for
    it (as numpy's `AxisError` is both a ValueError and an IndexError): code catching either keeps working.
    """


def check_int(value, name: str, note: str = "") -> None:
    """Raises TypeError unless `value` is an int (not a bool); `note` follows "an int" in the message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int{note}; got {type(value).__name__} {value!r}")


def check_bool(value, name: str) -> None:
    """Raises TypeError unless `value` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool; got {type(value).__name__} {value!r}")


def positive_int(value, name: str) -> int:
    """`value` as an int: TypeError unless it is an integer (numpy ones too, bools not), ValueError unless > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be a positive int; got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"`{name}` must be a positive int; got {value}")
    return int(value)


def positive_ints(values, name: str) -> tuple[int, ...]:
    """A non-empty list or tuple of positive ints as a tuple (ValueError / TypeError naming `name`)."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"`{name}` must be a non-empty list or tuple of positive ints; got {values!r}")
    return tuple(positive_int(v, name) for v in values)


def output_size_pair(output_size, name: str = "output_size") -> tuple[int, int]:
    """`(height, width)` of an output grid given as an int `k` (a `k x k` grid) or a pair of ints.

    Raises TypeError for a value that is neither (or has non-integer entries), PairLengthError (a
    ValueError and a TypeError) for a sequence whose length is not 2, and ValueError for a size below 1.
    """
    expected = "a positive int or a pair of positive ints (height, width)"
    if isinstance(output_size, numbers.Integral) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    else:
        try:
            size = None if isinstance(output_size, (str, bytes)) else tuple(output_size)
        except TypeError:
            size = None
        if size is None:
            raise TypeError(f"`{name}` must be {expected}; got {type(output_size).__name__} {output_size!r}")
        if len(size) != 2:
            raise PairLengthError(f"`{name}` must be {expected}; got {output_size!r}")
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in size):
            raise TypeError(f"`{name}` must be {expected}; got {output_size!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"`{name}` must be positive; got {output_size!r}")
    return int(size[0]), int(size[1])


def positive_scale(value, name: str = "spatial_scale") -> float:
    """`value` (a real number, not a bool) as a float; ValueError unless it is positive and finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive number; got {type(value).__name__} {value!r}")
    scale = float(value)
    if not (scale > 0.0 and math.isfinite(scale)):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}")
    return scale
