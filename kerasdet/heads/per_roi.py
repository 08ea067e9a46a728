"""Helpers of the heads that run a small network on every RoI of a batch: `[B, R, h, w, C]` in and out."""

from __future__ import annotations

import keras
import tensorflow as tf


def per_roi(network, features, **kwargs):
    """Runs `network` on `[B, R, h, w, C]` RoI features as one `[B * R, h, w, C]` batch and restores the leading
    `[B, R]` axes on its output (any trailing shape).

    Example:
        >>> per_roi(keras.layers.Conv2D(4, 1), tf.zeros([2, 3, 7, 7, 8])).shape
        TensorShape([2, 3, 7, 7, 4])
    """
    shape = tf.shape(features)
    out = network(tf.reshape(features, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0)), **kwargs)
    return tf.reshape(out, tf.concat([shape[:2], tf.shape(out)[1:]], axis=0))


def conv_stack(conv_dims, prefix):
    """3x3 ReLU convolutions of `conv_dims` channels, He-initialised, named `{prefix}{i}` from 1 (the mask and
    keypoint heads' FCNs)."""
    return [keras.layers.Conv2D(d, 3, padding="same", activation="relu", kernel_initializer="he_normal",
                                name=f"{prefix}{i + 1}") for i, d in enumerate(conv_dims)]


def build_stack(layers, features_shape):
    """Builds `layers` applied in sequence to RoI features of `features_shape`; returns the last output shape."""
    shape = (None,) + tuple(features_shape[2:])
    for layer in layers:
        layer.build(shape)
        shape = shape[:-1] + (layer.filters,)
    return shape
