"""YOLOv2's passthrough: space-to-depth in darknet's `reorg` order or in TensorFlow's."""

from __future__ import annotations

import keras
import tensorflow as tf

ORDERS = ("darknet", "tensorflow")


def darknet_reorg(x, block_size=2):
    """Darknet's `reorg` of a `[B, H, W, C]` map into `[B, H / s, W / s, C * s * s]` (`s` = `block_size`).

    Darknet stores maps channel-major (`[C, H, W]`). Its reorg layer reads that memory as if it were a map of
    `C / s**2` channels at `s` times the resolution (`[C / s**2, s H, s W]`), and writes element
    `(c2, s j + dy, s i + dx)` of that reading to position `(k, j, i)` of a `[C, H, W]` block, where
    `k = (s dy + dx) * C / s**2 + c2`; the result is then read as `[C s**2, H / s, W / s]`. The same numbers
    as TensorFlow's `space_to_depth`, in another order (and mixing rows of the input across channels); a
    darknet-trained YOLOv2 needs this order, a model trained here works with either. `C` must be a multiple of
    `s**2`, `H` and `W` of `s`.
    """
    s = int(block_size)
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    c = x.shape[-1]
    if c is None or c % (s * s):
        raise ValueError(f"darknet's reorg needs a channel count divisible by {s * s}; got {c}")
    memory = tf.transpose(x, [0, 3, 1, 2])                              # [B, C, H, W], darknet's memory order
    read = tf.reshape(memory, [b, c // (s * s), h, s, w, s])            # as [C / s^2, s H, s W]: (c2, j, dy, i, dx)
    moved = tf.transpose(read, [0, 3, 5, 1, 2, 4])                      # (dy, dx, c2, j, i): channel k first
    out = tf.reshape(moved, [b, c * s * s, h // s, w // s])             # the block read as [C s^2, H / s, W / s]
    return tf.transpose(out, [0, 2, 3, 1])


@keras.saving.register_keras_serializable(package="kerasdet")
class SpaceToDepth(keras.layers.Layer):
    """Moves `block_size` x `block_size` pixel blocks into channels: `[B, H, W, C] -> [B, H/s, W/s, C s^2]`.

    YOLOv2's passthrough layer (Redmon and Farhadi, 2017, §2 "Fine-Grained Features") turns the 26x26x512
    map (after a 1x1 convolution to 64 channels in the released model) into 13x13x256 and concatenates it with
    the 13x13 features. `order="darknet"` reproduces darknet's `reorg` layer exactly (see `darknet_reorg`: its
    output channels mix rows of the input), which the released darknet models were trained with;
    `order="tensorflow"` is `tf.nn.space_to_depth` (channel `(dy * s + dx) * C + c` holds pixel
    `(s j + dy, s i + dx)` of channel `c`). Both orders hold the same values.

    Args:
        block_size: `s` (2 in YOLOv2).
        order: "darknet" or "tensorflow".
        **kwargs: `keras.layers.Layer` arguments.

    Example:
        >>> SpaceToDepth(2)(tf.zeros([1, 26, 26, 64])).shape
        TensorShape([1, 13, 13, 256])
    """

    def __init__(self, block_size=2, order="darknet", **kwargs):
        super().__init__(**kwargs)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"`block_size` must be a positive int; got {block_size!r}")
        if order not in ORDERS:
            raise ValueError(f"`order` must be one of {ORDERS}; got {order!r}")
        self.block_size = block_size
        self.order = order

    def call(self, inputs):
        s = self.block_size
        checks = [tf.debugging.assert_equal(tf.shape(inputs)[1:3] % s, 0, message=(
            f"SpaceToDepth: the map's height and width must be multiples of block_size={s}"))]
        with tf.control_dependencies(checks):
            if self.order == "darknet":
                return darknet_reorg(inputs, s)
            return tf.nn.space_to_depth(inputs, s)

    def compute_output_shape(self, input_shape):
        s = self.block_size
        b, h, w, c = input_shape
        if self.order == "darknet" and c is not None and c % (s * s):
            raise ValueError(f"SpaceToDepth(order='darknet') needs a channel count divisible by {s * s}; got {c}")
        return (b, None if h is None else h // s, None if w is None else w // s, None if c is None else c * s * s)

    def get_config(self):
        config = super().get_config()
        config.update(block_size=self.block_size, order=self.order)
        return config
