"""Deterministic reductions shared by the ops (private)."""

from __future__ import annotations

import tensorflow as tf


def first_index_of_max(values, maxima, axis, size):
    """Lowest index along `axis` where `values == maxima` (deterministic argmax; `size` if none).

    Args:
        values: tensor of known rank.
        maxima: `values` reduced over `axis` (typically `tf.reduce_max(values, axis)`).
        axis: the reduced axis (negative counts from the end).
        size: the length of `axis` (int or int32 scalar).

    Returns:
        int32 tensor of the shape of `maxima`.
    """
    positions = tf.range(size, dtype=tf.int32)
    shape = [1] * values.shape.rank
    shape[axis] = -1
    positions = tf.reshape(positions, shape)
    hits = tf.where(values == tf.expand_dims(maxima, axis), positions, size)
    return tf.reduce_min(hits, axis=axis)
