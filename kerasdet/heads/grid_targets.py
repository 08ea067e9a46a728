"""What the grid detectors (YOLO, YOLOv2) share: which object each prediction slot is trained on."""

from __future__ import annotations

import tensorflow as tf


def slot_owners(slots, num_slots):
    """The object row each of an image's `num_slots` prediction slots is responsible for.

    Args:
        slots: int32 `[B, M]`, the slot of each object row (a grid cell, or a cell and anchor), -1 for rows that
            own none (padding, crowd regions).
        num_slots: int (or scalar tensor), slots per image.

    Returns:
        int32 `[B, num_slots]`: the row index of the slot's object, -1 for a slot no object falls on. When several
        rows pick one slot the last row wins (darknet's region layer writes the objects in order; which one is
        an arbitrary choice of the data's order).

    Example:
        >>> slot_owners(tf.constant([[2, 0, 2, -1]]), 3).numpy()
        array([[ 1, -1,  2]], dtype=int32)
    """
    slots = tf.convert_to_tensor(slots, tf.int32)
    batch, rows = tf.shape(slots)[0], tf.shape(slots)[1]
    num_slots = tf.cast(num_slots, tf.int32)
    index = tf.broadcast_to(tf.range(rows)[None, :], tf.shape(slots))
    # one segment per (image, slot), and one more that collects the rows owning none
    segment = tf.where(slots >= 0, slots + tf.range(batch)[:, None] * num_slots, batch * num_slots)
    owners = tf.math.unsorted_segment_max(tf.reshape(index, [-1]), tf.reshape(segment, [-1]), batch * num_slots + 1)
    owners = tf.maximum(owners[:-1], -1)  # empty segments give the int32 minimum
    return tf.reshape(owners, [batch, num_slots])
