"""Helpers shared by the dense detection losses: shape and number checks, ignored entries (float32 conversion
and flag checks are `kerasdet.ops._checks`')."""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

MEAN_REDUCTIONS = ("sum_over_batch_size", "mean")


def check_same_shape(y_true, y_pred, last_dim=None, hint="[..., K]"):
    """Static check that `y_true` and `y_pred` have compatible shapes (and the given last dimension)."""
    t_shape, p_shape = y_true.shape, y_pred.shape
    if t_shape.rank is not None and p_shape.rank is not None:
        if t_shape.rank != p_shape.rank or not t_shape.is_compatible_with(p_shape):
            raise ValueError(
                f"`y_true` and `y_pred` must have the same shape {hint}; got {tuple(t_shape)} and {tuple(p_shape)}"
            )
    if last_dim is not None:
        for name, shape in (("y_true", t_shape), ("y_pred", p_shape)):
            if shape.rank is not None and (shape.rank == 0 or shape[-1] not in (None, last_dim)):
                raise ValueError(f"`{name}` must have shape {hint}; got shape {tuple(shape)}")


def check_number(value, name: str, low=None, high=None, allow_none=False):
    """A finite real number in `[low, high]` (or None when allowed), returned as float."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = value == value and abs(value) != float("inf")
        ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be a number {bounds}{' or None' if allow_none else ''}; got {value!r}")
    return value


def mean_over_valid(losses, valid, reduction):
    """Zeroes ignored entries and, for the mean reductions, rescales so they average over valid ones.

    Keras divides the weighted sum by the number of entries for `"sum_over_batch_size"`/`"mean"`;
    multiplying by `total / num_valid` turns that into the mean over the valid entries, as Keras
    does for masks and `ignore_class`.
    """
    valid = tf.cast(valid, tf.float32)
    losses = losses * valid
    if reduction in MEAN_REDUCTIONS:
        total = tf.cast(tf.size(valid), tf.float32)
        losses = losses * tf.math.divide_no_nan(total, tf.reduce_sum(valid))
    return losses


def _check_numeric(value, name):
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    try:
        tf_dtype = tf.as_dtype(dtype)
    except TypeError:
        tf_dtype = None
    if tf_dtype is None or not (tf_dtype.is_floating or tf_dtype.is_integer or tf_dtype.is_bool):
        raise TypeError(f"`{name}` must hold numbers; got {type(value).__name__} of dtype {dtype}")


class DetectionLoss(keras.losses.Loss):
    """Base of the kerasdet losses: checks the inputs' types before Keras converts them, and keeps
    `dtype` in the config."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        _check_numeric(y_true, "y_true")
        _check_numeric(y_pred, "y_pred")
        if sample_weight is not None:
            _check_numeric(sample_weight, "sample_weight")
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.setdefault("dtype", self.dtype)
        return config
