"""The dense per-level head (a conv tower shared by every pyramid level) and the level loop."""

from __future__ import annotations

import keras
import tensorflow as tf


def conv_tower(depth, channels, outputs, bias_init="zeros", name="head", kernel_size=3):
    """`depth` 3x3 ReLU convolutions of `channels`, then one output convolution of `outputs` channels.

    The head RetinaNet's class and box subnets, the RPN and SSDLite-style heads share (weights
    N(0, 0.01), as in the RetinaNet and Faster R-CNN papers). A `keras.Sequential`, so that it
    applies to every level with the same weights.

    Args:
        depth: hidden convolutions (0 gives the output convolution alone).
        channels: their channels.
        outputs: channels of the output convolution (anchors per location x values per anchor).
        bias_init: initialiser of the output bias (e.g. the focal loss prior).
        name: the Sequential's name; its layers are `{name}_conv{i}` and `{name}_out`.
        kernel_size: kernel of the output convolution (3 for RetinaNet, 1 for the RPN's siblings).

    Example:
        >>> head = conv_tower(2, 64, 9 * 4, name="box_head")
        >>> head(tf.zeros([1, 32, 32, 64])).shape
        TensorShape([1, 32, 32, 36])
    """
    # one initializer object per layer: an unseeded Keras initializer fixes its seed when it is made, so a
    # shared one would give layers of the same shape identical starting kernels
    layers = [keras.layers.Conv2D(channels, 3, padding="same", activation="relu",
                                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                  name=f"{name}_conv{i}") for i in range(depth)]
    layers.append(keras.layers.Conv2D(outputs, kernel_size, padding="same",
                                      kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                      bias_initializer=bias_init, name=f"{name}_out"))
    return keras.Sequential(layers, name=name)


def per_level_outputs(head, maps, values_per_anchor, training=False, concat=True):
    """Runs `head` on every map and reshapes each output `[B, H, W, A*V]` to `[B, H*W*A, V]`.

    The anchor order is row-major over (y, x, anchor), as `AnchorGenerator` lays anchors out.
    Outputs are float32 whatever the dtype policy. With `concat` the levels are concatenated along
    axis 1, otherwise a list (one `[B, N_l, V]` per level) is returned.

    Example:
        >>> maps = [tf.zeros([2, 8, 8, 16]), tf.zeros([2, 4, 4, 16])]
        >>> per_level_outputs(conv_tower(0, 16, 3 * 4), maps, 4).shape
        TensorShape([2, 240, 4])
    """
    return flatten_levels([head(m, training=training) for m in maps], values_per_anchor, concat)


def flatten_levels(outputs, values_per_anchor, concat=True):
    """Head outputs `[B, H, W, A*V]` per level -> float32 `[B, H*W*A, V]` (concatenated, or a list)."""
    outs = [tf.cast(tf.reshape(y, [tf.shape(y)[0], -1, values_per_anchor]), tf.float32) for y in outputs]
    return tf.concat(outs, axis=1) if concat else outs
